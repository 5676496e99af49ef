"""Settings and where things live: the one frozen Settings, platform paths, the TOML config file."""

"""Settings: defaults → TOML → environment → flags, and every invalid value named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.config import settings as settings_mod
from relayd.config.settings import FIELDS, SettingsError, load


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = load(env={}, config=None, overrides=None)
    assert settings.config_path == tmp_path / "config" / "agent-relay" / "config.toml"
    assert settings.db_path == tmp_path / "data" / "agent-relay" / "relay.db"
    assert (settings.host, settings.port, settings.token) == ("127.0.0.1", 4850, None)
    assert settings.db_path.name == "relay.db"
    assert settings.log_file is None


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    config = _config(tmp_path, 'port = 5001\nhost = "127.0.0.2"\nretention_days = 9\n')
    from_file = load(config=config, env={})
    assert (from_file.port, from_file.host, from_file.retention_days) == (5001, "127.0.0.2", 9)
    from_env = load(config=config, env={"PORT": "5002"})
    assert (from_env.port, from_env.host) == (5002, "127.0.0.2")
    from_flag = load(config=config, env={"PORT": "5002"}, overrides={"port": 5003, "host": None})
    assert (from_flag.port, from_flag.host) == (5003, "127.0.0.2")


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = _config(tmp_path, "port = 5004\n")
    assert load(env={"AGENT_RELAY_CONFIG": str(config)}).port == 5004
    assert load(env={"AGENT_RELAY_CONFIG": str(config)}).config_path == config


def test_every_field_has_an_env_var_and_a_settings_attribute() -> None:
    names = {spec.name for spec in FIELDS}
    assert names <= set(settings_mod.Settings.__dataclass_fields__)
    assert all(spec.env for spec in FIELDS)


def test_log_file_setting(tmp_path: Path) -> None:
    settings = load(config=_config(tmp_path, ""), env={"AGENT_RELAY_LOG_FILE": "~/r.log"})
    assert settings.log_file == Path("~/r.log").expanduser()
    assert load(config=_config(tmp_path, ""), env={"AGENT_RELAY_LOG_FILE": ""}).log_file is None


@pytest.mark.parametrize(
    "env, setting",
    [
        ({"PORT": "abc"}, "port"),
        ({"PORT": "70000"}, "port"),
        ({"HOST": " "}, "host"),
        ({"STALE_TTL_MS": "5"}, "stale_ttl_ms"),
        ({"REAP_INTERVAL_MS": "x"}, "reap_interval_ms"),
        ({"RETENTION_DAYS": "0"}, "retention_days"),
        ({"OFFLINE_PRUNE_MS": "-1"}, "offline_prune_ms"),
        ({"AGENT_RELAY_ALLOW_UNAUTH": "maybe"}, "allow_unauth"),
        ({"AGENT_RELAY_INTEGRATIONS": "{nope"}, "integrations"),
        ({"AGENT_RELAY_INTEGRATIONS": '[{"name": "a", "token": " "}]'}, "integrations"),
        ({"AGENT_RELAY_INTEGRATION_RATE_LIMIT_PER_MINUTE": "0"},
         "integration_rate_limit_per_minute"),
        ({"AGENT_RELAY_LOG_LEVEL": "loud"}, "log_level"),
        ({"AGENT_RELAY_SSE_KEEPALIVE_SECONDS": "fast"}, "sse_keepalive_seconds"),
    ],
)
def test_invalid_environment_values_name_the_setting(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load(config=_config(tmp_path, ""), env=env)
    message = str(excinfo.value)
    assert f"invalid {setting} (environment " in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, words",
    [
        ("port = 'x'", "invalid port ("),
        ("port = true", "invalid port ("),
        ("retention_days = 0", "invalid retention_days ("),
        ("colour = 'blue'", "unknown setting(s) colour"),
        ("port = ", "is not valid TOML"),
    ],
)
def test_invalid_config_file_is_one_clear_line(tmp_path: Path, text: str, words: str) -> None:
    config = _config(tmp_path, text)
    with pytest.raises(SettingsError) as excinfo:
        load(config=config, env={})
    assert words in str(excinfo.value)
    assert str(config) in str(excinfo.value)


def test_invalid_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"invalid port \(--port\)"):
        load(config=_config(tmp_path, ""), env={}, overrides={"port": -3})


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load(config=tmp_path / "missing.toml", env={})


def test_non_loopback_without_token_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    exposed = load(config=config, env={"HOST": "0.0.0.0"})
    with pytest.raises(SettingsError, match="AGENT_RELAY_TOKEN"):
        settings_mod.check_bind_safety(exposed)
    settings_mod.check_bind_safety(load(config=config, env={"HOST": "0.0.0.0",
                                                            "AGENT_RELAY_TOKEN": "t0ken-123"}))
    settings_mod.check_bind_safety(load(config=config, env={"HOST": "0.0.0.0",
                                                            "AGENT_RELAY_ALLOW_UNAUTH": "1"}))


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for spec in FIELDS:
        assert f"| `{spec.name}` | `{spec.env}` |" in doc, spec.name

"""Token identification (relayd.http.auth.identify) on edge-case tokens."""

from __future__ import annotations

from relayd.config.settings import Integration, Settings
from relayd.http.auth import identify

# What os.environ holds for an AGENT_RELAY_TOKEN whose bytes are not UTF-8.
UNDECODABLE = "s3cret\udcff"


def test_an_admin_token_with_undecodable_bytes_is_compared_not_crashed_on() -> None:
    settings = Settings(token=UNDECODABLE)
    admin = identify(settings, UNDECODABLE)
    assert admin is not None and admin.name == "admin"
    assert identify(settings, "s3cret") is None
    assert identify(settings, None) is None


def test_integration_tokens_are_found_next_to_an_admin_token() -> None:
    ci = Integration(name="ci", token="ci-token", scopes=frozenset({"tasks:create"}))
    settings = Settings(token=UNDECODABLE, integrations=(ci,))
    found = identify(settings, "ci-token")
    assert found is not None and found.integration == ci and found.scopes == ci.scopes

"""The provider environment: deterministic agent ids, profiles and their overrides."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from relayctl.provider_env import (
    Profile,
    ProviderEnvError,
    default_agent_id,
    identity_from_env,
    profile_from_env,
    project_name,
    provider_agent_id,
    read_profiles,
    safe_part,
    session_identifier,
)
from relayd.config import paths

AGENT_ID_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")

PROFILES = """
[profiles.reviewer]
label = "Reviewer"
tags = ["review", "backend"]
caps = ["chat", "review"]
channels = ["ci", "alerts"]
approval = "guarded"

[profiles.default]
label = "Plain"
capabilities = "chat,shell"
"""


@pytest.fixture
def profiles_path(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return path


@pytest.fixture(autouse=True)
def no_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real user's profiles.toml out of these tests."""
    monkeypatch.setattr(paths, "config_dir", lambda: tmp_path / "no-config")


def test_provider_id_is_host_project_and_first_8_hex_of_the_session_sha256() -> None:
    expected = hashlib.sha256(b"session-42").hexdigest()[:8]
    assert provider_agent_id("box", "relay", "session-42") == f"box-relay-{expected}"


def test_same_session_gives_the_same_id_and_another_session_another(tmp_path: Path) -> None:
    first = default_agent_id({"AGENT_RELAY_SESSION": "s1"}, tmp_path)
    again = default_agent_id({"AGENT_RELAY_SESSION": "s1"}, tmp_path)
    other = default_agent_id({"AGENT_RELAY_SESSION": "s2"}, tmp_path)
    assert first == again != other
    assert AGENT_ID_RE.match(first)
    assert first.split("-")[-1] == hashlib.sha256(b"s1").hexdigest()[:8]


def test_explicit_agent_id_wins(tmp_path: Path) -> None:
    env = {"AGENT_RELAY_AGENT_ID": "reviewer-1", "AGENT_RELAY_SESSION": "s1"}
    assert default_agent_id(env, tmp_path) == "reviewer-1"


def test_without_a_session_variable_the_user_and_project_identify_the_session(
    tmp_path: Path,
) -> None:
    import getpass

    # stable across shells and scripts: the same user in the same project is one agent
    assert session_identifier({}, tmp_path) == f"{getpass.getuser()}:{tmp_path}"
    assert session_identifier({"AGENT_RELAY_SESSION": " abc "}, tmp_path) == "abc"


def test_project_is_the_git_root_name_from_a_subdirectory(tmp_path: Path) -> None:
    root = tmp_path / "my project!"
    (root / ".git").mkdir(parents=True)
    deep = root / "src" / "pkg"
    deep.mkdir(parents=True)
    assert project_name(deep) == "my-project"
    assert project_name(tmp_path / "elsewhere") == "elsewhere"


def test_unsafe_characters_never_reach_the_id() -> None:
    assert safe_part("héllo wörld/..", "x", 64) == "h-llo-w-rld"
    assert safe_part("///", "fallback", 64) == "fallback"
    assert len(safe_part("a" * 300, "x", 40)) == 40


def test_env_lists_override_nothing_when_unset(tmp_path: Path) -> None:
    assert profile_from_env({}) == Profile()


def test_env_variables_are_comma_lists(tmp_path: Path) -> None:
    env = {
        "AGENT_RELAY_LABEL": "Builder",
        "AGENT_RELAY_TAGS": "a, b,,c ",
        "AGENT_RELAY_CAPS": "chat,build",
        "AGENT_RELAY_CHANNELS": "ci",
        "AGENT_RELAY_APPROVAL": "read-only",
    }
    assert profile_from_env(env) == Profile(
        label="Builder", tags=("a", "b", "c"), capabilities=("chat", "build"),
        channels=("ci",), approval="read-only",
    )


def test_the_chosen_profile_gives_defaults_and_env_variables_override_it(
    profiles_path: Path,
) -> None:
    env = {
        "AGENT_RELAY_PROFILES_FILE": str(profiles_path),
        "AGENT_RELAY_PROFILE": "reviewer",
        "AGENT_RELAY_TAGS": "frontend",
        "AGENT_RELAY_APPROVAL": "open",
    }
    assert profile_from_env(env) == Profile(
        label="Reviewer", tags=("frontend",), capabilities=("chat", "review"),
        channels=("ci", "alerts"), approval="open",
    )


def test_a_profile_named_default_applies_when_none_is_chosen(profiles_path: Path) -> None:
    profile = profile_from_env({"AGENT_RELAY_PROFILES_FILE": str(profiles_path)})
    assert profile == Profile(label="Plain", capabilities=("chat", "shell"))


def test_top_level_tables_work_without_a_profiles_table(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[ops]\nlabel = "Ops"\ntags = ["oncall"]\n')
    assert read_profiles(path, required=True) == {"ops": Profile(label="Ops", tags=("oncall",))}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[profiles.x]\napproval = 'sometimes'\n", "approval must be one of"),
        ("[profiles.x]\ntags = 3\n", "'tags' must be a list of strings"),
        ("[profiles.x]\ncolour = 'red'\n", "unknown key(s) colour"),
        ("[profiles.x\n", "not valid TOML"),
        ("[profiles.x]\nlabel = 5\n", "'label' must be a string"),
    ],
)
def test_a_broken_profiles_file_names_the_problem(tmp_path: Path, content: str,
                                                  fragment: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(content)
    with pytest.raises(ProviderEnvError, match=re.escape(fragment)):
        read_profiles(path, required=True)


def test_an_unknown_profile_lists_the_known_ones(profiles_path: Path) -> None:
    env = {"AGENT_RELAY_PROFILES_FILE": str(profiles_path), "AGENT_RELAY_PROFILE": "nope"}
    with pytest.raises(ProviderEnvError, match=r"no such profile .*default, reviewer"):
        profile_from_env(env)


def test_a_named_profiles_file_must_exist(tmp_path: Path) -> None:
    env = {"AGENT_RELAY_PROFILES_FILE": str(tmp_path / "missing.toml")}
    with pytest.raises(ProviderEnvError, match="does not exist"):
        profile_from_env(env)


def test_a_bad_approval_variable_is_refused() -> None:
    with pytest.raises(ProviderEnvError, match="AGENT_RELAY_APPROVAL"):
        profile_from_env({"AGENT_RELAY_APPROVAL": "yolo"})


def test_registration_body_carries_identity_and_only_the_fields_that_are_set(
    tmp_path: Path, profiles_path: Path,
) -> None:
    env = {
        "AGENT_RELAY_SESSION": "s1",
        "AGENT_RELAY_PROFILES_FILE": str(profiles_path),
        "AGENT_RELAY_PROFILE": "reviewer",
        "AGENT_RELAY_PROVIDER": "claude-code",
    }
    identity = identity_from_env(env, tmp_path)
    body = identity.registration()
    assert body["id"] == identity.agent_id == default_agent_id(env, tmp_path)
    assert body["project"] == tmp_path.name
    assert body["provider"] == "claude-code"
    assert body["tags"] == ["review", "backend"]
    assert body["capabilities"] == ["chat", "review"]
    assert body["approval"] == "guarded"
    bare = identity_from_env({"AGENT_RELAY_SESSION": "s1"}, tmp_path).registration()
    assert set(bare) == {"id", "machine", "project"}

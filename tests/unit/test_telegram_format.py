"""MarkdownV2 escaping and splitting at Telegram's limit; the channel settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.channels import telegram_format as fmt
from relayd.config import settings
from tests.fake_telegram import markdown_v2_error, visible_text


def test_every_reserved_character_is_escaped() -> None:
    text = "_*[]()~`>#+-=|{}.!\\ plain ü 🚀"
    escaped = fmt.escape(text)
    assert markdown_v2_error(escaped) is None
    assert visible_text(escaped) == text


def test_split_counts_utf16_units_and_prefers_line_breaks() -> None:
    text = ("🚀" * 30 + "\n") * 10
    pieces = fmt.split(text, 100)
    assert "".join(pieces) == text
    assert all(sum(fmt._cost(c) for c in piece) <= 100 for piece in pieces)
    assert all(piece.endswith("\n") for piece in pieces)


def test_render_fits_every_part_in_4096() -> None:
    parts = fmt.render(7, "alice", "s" * 500, "a." * 4500, sent_by="admin")
    assert len(parts) == 4  # "." costs two (escaped), "a" one
    assert parts[0].header.startswith("#7 from alice (via admin): sss")
    for part in parts:
        assert markdown_v2_error(part.markdown()) is None
        assert fmt.units(visible_text(part.markdown())) <= fmt.MAX_TEXT
        assert fmt.units(part.plain()) <= fmt.MAX_TEXT
    assert "".join(p.body for p in parts) == "a." * 4500


def test_chat_ids_setting(tmp_path: Path) -> None:
    config = tmp_path / "none.toml"
    config.write_text("")

    def load(**env: str) -> settings.Settings:
        return settings.load(config=config, env=env)

    assert load(AGENT_RELAY_TELEGRAM_CHAT_IDS="12, -100345 ,").telegram_chat_ids == (12, -100345)
    with pytest.raises(settings.SettingsError, match="AGENT_RELAY_TELEGRAM_CHAT_IDS"):
        load(AGENT_RELAY_TELEGRAM_CHAT_IDS="@mychannel")
    with pytest.raises(settings.SettingsError, match="http"):
        load(AGENT_RELAY_TELEGRAM_API_URL="ftp://x")

"""Bridges between the relay and chat services: the Channel protocol (base.py) and the
Telegram bot (telegram.py, telegram_format.py)."""

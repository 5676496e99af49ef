"""A running relay: its assembly (relay.py), the parts it starts and the context they share."""

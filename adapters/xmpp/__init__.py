"""xmpp adapter (in progress)."""

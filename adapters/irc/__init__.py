"""irc adapter (in progress)."""

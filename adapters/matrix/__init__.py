"""matrix adapter (in progress)."""

"""Protocol adapters, installed as `imbridge.adapters` and found by entry point."""

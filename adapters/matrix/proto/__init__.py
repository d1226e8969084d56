"""Matrix client-server JSON as values: what a timeline event means, the request that
sends an item, Matrix HTML, polls, media URIs. Sans-I/O: no client library, no HTTP, so
every rule is tested with recorded events."""

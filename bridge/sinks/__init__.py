"""Record sinks: every archive record streamed to syslog, an HTTP collector or a file."""

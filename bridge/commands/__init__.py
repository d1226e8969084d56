"""The implementations behind `imbridge` subcommands: plain functions that print and
return an exit code (0 ok, 1 negative answer or runtime failure, 2 bad input), so tests
call them directly and `cli.py` only parses arguments."""

"""IRC as values: parsing and building lines, translating them to and from the core's
events, registration, flood-control arithmetic. Sans-I/O: no sockets, no tasks, no
clock, no client library, so every rule here is tested with recorded lines."""

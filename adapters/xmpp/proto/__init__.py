"""The XMPP adapter's sans-I/O half: stanzas read into values, values built into stanzas.

Everything here is a pure function of its inputs: no slixmpp object, no socket, no task
and no clock. Ids and the current time come in as arguments, so the same stanza always
gives the same event, the recorded samples in `tests/data/xmpp/` replay exactly, and
hypothesis can fuzz every translator without a server. Only the standard library, the
core's value modules and this package may be imported (`tests/unit/test_boundaries.py`).
"""

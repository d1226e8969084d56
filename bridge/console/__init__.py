"""The review console: compliance officers search, read in context, flag, review, hold and
export the archive in a browser, and every look is an `access` record in the chain.

Server-rendered (aiohttp and jinja2 with autoescaping), every asset local, the core flows
without JavaScript. It opens its own connection to the state database, inside the daemon
(`console.enabled`, under `/console/` on `bridge.http.listen`) or as `imbridge console`
beside it: SQLite's WAL lets both read while the relay writes, and the chain's tail is
read inside each write transaction, so records appended from either process chain
correctly. See docs/console.md.
"""

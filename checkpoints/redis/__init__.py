"""The state store on Redis: what a fleet shares.

One module per concern (``jobs``, ``leases``, ``workers``, ``ledger``), each a
mixin over the one client of ``db``; ``store.RedisStore`` joins them. Every
step that checks and writes runs as a Lua script (the ``.lua`` files here),
one atomic step on the server.
"""

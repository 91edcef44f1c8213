"""The state store in one SQLite file: the embedded default, no server.

One module per concern (``jobs``, ``leases``, ``workers``, ``ledger``), each a
mixin over the one connection of ``db``; ``store.SqliteStore`` joins them.
"""

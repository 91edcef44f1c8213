"""What runs inside a worker process: layer 5 of 6 (imports ``reports``, ``broker``, ``checkpoints``, ``pipeline``).

``settings`` (a worker's settings, read once at its start), ``process``
(what a process holds for its life), ``tasks`` (Celery tasks: outcomes to
acks), ``shard_runner`` (one shard: lease, label, commit), ``watchers``
(the hooks a worker registers: Prometheus, the ledger), ``labeller_pool``
(the labellers a process holds), ``fault_wait``, ``heartbeat``,
``takeover`` (dead workers' shards), ``drain``, ``online`` and ``batcher``
(online requests), ``cache`` (the dedup cache), ``exporter`` and ``gauges``
(``/metrics`` and probes), ``logs``, ``allocator``.
"""

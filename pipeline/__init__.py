"""The data path, free of Celery and of job state: layer 1 of 6 (imports nothing of the others).

- A job: ``job`` (``JobSpec``, ``Job``), ``sources`` and ``inventory``
  (listing), ``shard_lists`` (a shard's URIs), ``access`` (what a worker may
  touch), ``faults`` (which failures pass), ``errors``, ``envvars``,
  ``redaction`` (secrets kept out of logs), ``words`` (counted nouns in what is printed).
- Where bytes live: ``location`` (a local path or an OSS key, parsed once),
  ``storage/`` (local, OSS), ``layout`` (every name under a job's output),
  ``sink/`` (a job's output: parts, durable copies, the summary;
  JSON Lines today), ``records`` (one record per input), ``error_kinds`` (the
  kind of an error record's reason: "not found", "corrupt", ...).
- Labelling: ``labeller`` (fetch, decode, batch, predict), ``decode``, ``decode_processes`` (opt-in decoding in processes beside a worker),
  ``gpu_decode``, ``decode_budget``, ``model`` (the model contract),
  ``model_spec`` (what a model spec names, checked before it loads),
  ``model_loader`` (a model spec to a model), ``model_pin`` (a job's model
  package pinned by its digest, and a worker's cache of it), ``engines`` (a classifier on a
  runtime and precision), ``runtimes/``, ``calibration``, ``artifacts``,
  ``labels``, ``process_metrics`` (the Prometheus metrics a process records).
"""

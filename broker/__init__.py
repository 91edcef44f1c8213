"""Where jobs enter the fleet and how the fleet is sized: layer 3 of 6 (imports ``checkpoints`` and ``pipeline``).

``settings`` (where the fleet talks: broker, result backend, state store,
namespace; read once, at the edge), ``routes`` (queue and task names, and
``celery_config``: what a plain Celery producer sets to reach a namespace),
``celery_app`` (the app, built by ``make_app(settings)``), ``planner`` (a
job's listing cut into shards, less what an incremental run skips), ``client`` (``VisionClient``: online
requests), ``counters`` (what ``visionfleet stats`` reads), ``fleet`` (the
fleet now: queues, images left, live workers), ``scaling`` (the autoscaling
decision).
"""

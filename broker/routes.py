"""Queue and task names: the message contract any Celery client can use by name.

Kept apart from the Celery app so that naming a queue (the client, the
tasks) never builds an app or touches a broker.
"""
BULK_QUEUE = "bulk"
ONLINE_QUEUE = "online"
RELABEL_SHARD_TASK = "visionfleet.relabel_shard"
CLASSIFY_TASK = "visionfleet.classify"

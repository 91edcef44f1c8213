"""The run ledger on Redis: the job's timeline, seconds and machines hashes, and its event counts."""
from visionfleet.checkpoints.redis.db import RedisDb
from visionfleet.checkpoints.run_ledger import LEDGER_EVENTS, RunLedger


class RedisLedger(RedisDb, RunLedger):
    def note(self, job_id: str, event: str) -> None:
        if event not in LEDGER_EVENTS:
            raise ValueError(f"not a ledger event: {event}")
        self._lua["note"](keys=[self._keys.job(job_id)], args=[event])

    def ledger(self, job_id: str) -> dict:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self._keys.job_timeline(job_id))
        pipe.hgetall(self._keys.job_seconds(job_id))
        pipe.hgetall(self._keys.job_machines(job_id))
        pipe.hmget(self._keys.job(job_id), "redone", "takeovers", *LEDGER_EVENTS)
        timeline, seconds, machines, counts = pipe.execute()
        workers: dict[str, dict] = {}
        for name, value in machines.items():
            host, _, what = name.rpartition("|")
            workers.setdefault(host, {})[what] = int(value) if what == "images" else float(value)
        return {"timeline": {int(m): int(n) for m, n in timeline.items()},
                "seconds": {int(s): int(n) for s, n in seconds.items()}, "workers": workers,
                **dict(zip(("redone", "takeovers", *LEDGER_EVENTS), (int(c or 0) for c in counts)))}

"""The hooks' fan-out: every hook hears every event, in the order given; one that fails is logged
and stops neither the others nor the caller. (The worker's plug-ins at work on a shard: test_shard_runner.py.)"""
import json
import logging

import pytest

from visionfleet.broker.planner import plan_job
from visionfleet.pipeline.job import JobSpec
from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.hooks import Commit, Hook, Hooks
from visionfleet.checkpoints.run_ledger import Usage
from visionfleet.reports.run import Price, RunReport

COMMIT = Commit("j1", 3, ok=5, errors=1, done=True, busy_s=2.5)


class Recorder(Hook):
    def __init__(self, name: str, heard: list, usage: Usage | None = None) -> None:
        self.name, self.heard, self._usage = name, heard, usage

    def on_shard_start(self, job_id, shard, takeovers):
        self.heard.append((self.name, "start", job_id, shard, takeovers))

    def on_stage(self, stage, seconds):
        self.heard.append((self.name, "stage", stage))

    def usage(self, commit):
        self.heard.append((self.name, "usage", commit))
        return self._usage

    def on_commit(self, commit):
        self.heard.append((self.name, "commit", commit))

    def on_job_end(self, store, job_id, state):
        self.heard.append((self.name, "end", job_id, state))


class Failing(Hook):
    def on_shard_start(self, *args):
        raise RuntimeError("a hook's bug")

    on_stage = usage = on_commit = on_job_end = on_shard_start


def test_each_hook_hears_each_event_in_the_order_given():
    heard = []
    hooks = Hooks([Recorder("a", heard), Recorder("b", heard)])
    hooks.on_shard_start("j1", 3, 1)
    with hooks.timed("write"):
        pass
    hooks.on_commit(COMMIT)
    hooks.on_job_end(None, "j1", "succeeded")
    assert heard == [("a", "start", "j1", 3, 1), ("b", "start", "j1", 3, 1), ("a", "stage", "write"),
                     ("b", "stage", "write"), ("a", "commit", COMMIT), ("b", "commit", COMMIT),
                     ("a", "end", "j1", "succeeded"), ("b", "end", "j1", "succeeded")]


def test_a_failing_hook_is_logged_and_the_others_still_hear(caplog):
    heard = []
    hooks = Hooks([Failing(), Recorder("after", heard)])
    with caplog.at_level(logging.WARNING, logger="visionfleet.checkpoints.hooks"):
        hooks.on_shard_start("j1", 3, 0)
        hooks.on_commit(COMMIT)
        hooks.on_job_end(None, "j1", "failed")
        with hooks.timed("commit"):
            pass
    assert [h[1] for h in heard] == ["start", "commit", "end", "stage"]
    failures = [(r.hook, r.event) for r in caplog.records if r.getMessage() == "hook failed"]
    assert failures == [("Failing", "on_shard_start"), ("Failing", "on_commit"), ("Failing", "on_job_end"),
                        ("Failing", "on_stage")]


def test_the_first_usage_given_goes_with_the_commit():
    heard = []
    mine, theirs = Usage("host-a", 2.5), Usage("host-b", 9.0)
    hooks = Hooks([Failing(), Recorder("none", heard), Recorder("mine", heard, mine), Recorder("theirs", heard, theirs)])
    assert hooks.usage(COMMIT) is mine
    assert [h[0] for h in heard] == ["none", "mine"]  # asked in order, until one gives it
    assert Hooks([Hook(), Failing()]).usage(COMMIT) is None  # no ledger kept: the commit goes on without
    assert Hooks().usage(COMMIT) is None


def test_a_timed_step_is_heard_of_when_it_fails_and_its_error_goes_on():
    heard = []
    with pytest.raises(OSError, match="disk full"):
        with Hooks([Failing(), Recorder("a", heard)]).timed("write"):
            raise OSError("disk full")
    assert heard == [("a", "stage", "write")]


def test_an_empty_job_ends_with_the_planner_and_its_hooks_hear_of_it(tmp_path):
    """The planner ends an empty job itself; the command that runs it registers the report there."""
    (tmp_path / "in").mkdir()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    heard = []
    spec = JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), allow_empty=True)
    priced = RunReport([Price("VISIONFLEET_PRICE_PER_HOUR", 1.5, None)])  # the command's, read at its edge
    job_id = plan_job(spec, store, lambda j, s: None, hooks=Hooks([Recorder("cli", heard), priced]))
    assert heard == [("cli", "end", job_id, "succeeded")]
    report = json.loads((tmp_path / "out" / job_id / "_REPORT.json").read_text())
    assert (report["state"], report["images"], report["workers"]) == ("succeeded", 0, [])
    assert [(c["price"], c["spot_per_hour"]) for c in report["cost"]] == [("VISIONFLEET_PRICE_PER_HOUR", 1.5)]


def test_a_report_that_cannot_be_written_says_how_to_make_it_and_the_job_stays_succeeded(tmp_path, caplog):
    (tmp_path / "in").mkdir()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    spec = JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), allow_empty=True)
    job_id = plan_job(spec, store, lambda j, s: None)
    (tmp_path / "out" / job_id / "_REPORT.json").mkdir()  # where the report goes, taken: its write fails
    with caplog.at_level(logging.WARNING):
        RunReport([]).on_job_end(store, job_id, "succeeded")
    assert [r.job_id for r in caplog.records if r.getMessage().startswith("run report not written")] == [job_id]
    assert store.progress(job_id).state == "succeeded"

"""Dynamic batching: the flush decision with a clock passed in, then the thread."""
import threading

import pytest

from visionfleet.workers.batcher import BatchPolicy, DynamicBatcher, due, wait_left

POLICY = BatchPolicy(max_size=4, max_wait_s=0.010)


def test_nothing_waiting_is_never_due():
    assert not due(0, None, 100.0, POLICY)
    assert wait_left(None, 100.0, POLICY) is None


def test_full_batch_is_due_at_once():
    assert due(4, oldest_at=100.0, now=100.0, policy=POLICY)


def test_partial_batch_waits_for_the_oldest_deadline():
    assert not due(3, oldest_at=100.0, now=100.009, policy=POLICY)
    assert wait_left(100.0, 100.004, POLICY) == pytest.approx(0.006)
    assert due(3, oldest_at=100.0, now=100.010, policy=POLICY)
    assert wait_left(100.0, 100.5, POLICY) == 0.0


def test_policy_is_validated():
    with pytest.raises(ValueError):
        BatchPolicy(max_size=0)


def test_concurrent_submissions_share_bounded_batches():
    sizes, gate = [], threading.Event()

    def run(items):
        gate.wait(5)  # hold the first batch so the rest pile up
        sizes.append(len(items))
        return [i * 10 for i in items]

    batcher = DynamicBatcher(run, BatchPolicy(max_size=4, max_wait_s=0.001))
    futures = [batcher.submit(i) for i in range(10)]
    gate.set()
    assert [f.result(timeout=5) for f in futures] == [i * 10 for i in range(10)]
    assert max(sizes) <= 4 and sum(sizes) == 10 and len(sizes) < 10


def test_a_failing_batch_fails_its_callers_not_the_batcher():
    def run(items):
        if "boom" in items:
            raise RuntimeError("model fell over")
        return items

    batcher = DynamicBatcher(run, BatchPolicy(max_size=1, max_wait_s=0))
    with pytest.raises(RuntimeError, match="fell over"):
        batcher.submit("boom").result(timeout=5)
    assert batcher.submit("fine").result(timeout=5) == "fine"


def test_wrong_result_count_is_an_error():
    batcher = DynamicBatcher(lambda items: [], BatchPolicy(max_size=1, max_wait_s=0))
    with pytest.raises(RuntimeError, match="gave 0 results"):
        batcher.submit(1).result(timeout=5)


def test_a_closed_batcher_runs_what_waits_then_answers_late_callers_alone():
    sizes, gate = [], threading.Event()

    def run(items):
        gate.wait(5)
        sizes.append(len(items))
        return [i * 10 for i in items]

    batcher = DynamicBatcher(run, BatchPolicy(max_size=4, max_wait_s=0.001))
    waiting = [batcher.submit(i) for i in range(6)]
    batcher.close()  # its model unloaded while requests wait
    gate.set()
    late = batcher.submit(9)  # a caller that held on to it: answered here, not left hanging
    assert [f.result(timeout=5) for f in waiting] == [i * 10 for i in range(6)] and late.result(timeout=0) == 90
    batcher._thread.join(5)
    assert not batcher._thread.is_alive() and sum(sizes) == 7

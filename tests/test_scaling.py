"""The autoscaling decision: a pure function of what the fleet looks like, at a given time."""
import pytest

from visionfleet.broker.scaling import MIN_BUSY_S, Fleet, Policy, Process, decide, per_worker_rate
from visionfleet.pipeline.errors import ConfigError

NOW = 1_000_000.0
POLICY = Policy(target_finish_s=100, min_workers=0, max_workers=10, online_backlog_per_worker=50)


def worker(name: str, rate: float = 0.0, *, busy_s: float = 100.0, on_shard: bool = True,
           lapses_in: float = 15.0) -> Process:
    return Process(worker=name, alive_until=NOW + lapses_in, images=int(rate * busy_s), busy_s=busy_s,
                   on_shard=on_shard)


def test_sizes_the_fleet_to_finish_the_backlog_in_the_target_time_at_the_measured_rate():
    fleet = Fleet(backlog_images=10_000, online_backlog=0, processes=(worker("a", 20.0),))
    decision = decide(fleet, POLICY, NOW)
    # 10,000 images / (20 images/s per worker * 100 s) = 5 workers
    assert (decision.desired_workers, decision.workers, decision.images_per_worker_s) == (5, 1, 20.0)
    assert "VISIONFLEET_TARGET_FINISH_S=100" in decision.reason


def test_a_workers_rate_is_the_sum_of_its_processes_and_workers_are_averaged():
    processes = [worker("a", 10.0), worker("a", 10.0), worker("b", 40.0),
                 worker("c", 99.0, busy_s=MIN_BUSY_S / 2)]  # too short a time to tell: left out
    assert per_worker_rate(processes) == pytest.approx((20.0 + 40.0) / 2)


def test_with_no_rate_measured_yet_it_keeps_the_fleet_and_asks_for_one_worker_when_there_is_none():
    waiting = Fleet(backlog_images=500, online_backlog=0)
    assert decide(waiting, POLICY, NOW).desired_workers == 1
    two_new = Fleet(500, 0, (worker("a", busy_s=1.0), worker("b", busy_s=1.0)))
    decision = decide(two_new, POLICY, NOW)
    assert decision.desired_workers == 2 and "no worker rate measured yet" in decision.reason


def test_waiting_online_requests_add_workers_on_top_of_the_running_fleet():
    fleet = Fleet(backlog_images=0, online_backlog=120, processes=(worker("a", on_shard=False),))
    decision = decide(fleet, POLICY, NOW)
    assert decision.desired_workers == 1 + 3  # ceil(120 / 50) more than the one running
    assert "online latency first" in decision.reason


def test_bounds_hold_and_say_so():
    flood = Fleet(backlog_images=10**9, online_backlog=0, processes=(worker("a", 1.0),))
    capped = decide(flood, POLICY, NOW)
    assert capped.desired_workers == 10 and "VISIONFLEET_MAX_WORKERS=10" in capped.reason
    idle = decide(Fleet(0, 0), Policy(min_workers=2, max_workers=10), NOW)
    assert idle.desired_workers == 2 and "VISIONFLEET_MIN_WORKERS=2" in idle.reason
    assert decide(Fleet(0, 0), POLICY, NOW).desired_workers == 0  # nothing to do: scale to zero


def test_never_zero_while_a_worker_holds_a_shard():
    # A job cancelled mid-shard: no images counted as waiting, but a shard is still leased.
    fleet = Fleet(backlog_images=0, online_backlog=0, processes=(worker("a", 5.0, on_shard=True),))
    decision = decide(fleet, POLICY, NOW)
    assert decision.desired_workers == 1 and decision.busy_workers == 1


def test_a_worker_whose_beats_lapsed_by_now_counts_for_nothing():
    fleet = Fleet(backlog_images=0, online_backlog=0, processes=(worker("a", 5.0, lapses_in=10.0),))
    assert decide(fleet, POLICY, NOW).workers == 1
    later = decide(fleet, POLICY, NOW + 11)
    assert (later.workers, later.busy_workers, later.desired_workers) == (0, 0, 0)


def test_policy_settings_are_checked(monkeypatch):
    monkeypatch.setenv("VISIONFLEET_MIN_WORKERS", "5")
    monkeypatch.setenv("VISIONFLEET_MAX_WORKERS", "2")
    with pytest.raises(ConfigError, match="VISIONFLEET_MIN_WORKERS=5 is above VISIONFLEET_MAX_WORKERS=2"):
        Policy.from_env()
    monkeypatch.setenv("VISIONFLEET_MAX_WORKERS", "0")
    with pytest.raises(ConfigError, match="VISIONFLEET_MAX_WORKERS"):
        Policy.from_env()


def test_a_process_reports_its_own_speed_in_its_heartbeat():
    from visionfleet.workers.heartbeat import Activity

    activity = Activity()
    activity.start("job", 0, "token")
    activity.committed(40)
    during = activity.as_info()
    activity.stop()
    after = activity.as_info()
    assert (during["images"], after["images"]) == (40, 40)
    assert 0 <= during["busy_s"] <= after["busy_s"] and "job_id" not in after

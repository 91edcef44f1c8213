"""The deployment recipes under deploy/ (Kubernetes + KEDA, Alibaba ESS, the CloudMonitor push
script, the Grafana dashboard) cannot be applied here. Check what can be: that they parse, that
every metric they name is one a worker exports, and that their numbers agree with each other."""
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from visionfleet.cli.main import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PUSH = DEPLOY / "alibaba" / "push-desired-workers.sh"
METRIC = re.compile(r"\bvisionfleet_[a-z0-9_]+")
ALIBABA_SPOT_NOTICE_S = 300  # Alibaba reclaims a spot instance about 5 minutes after the notice

# The families a worker exports (workers/exporter.py): name -> (type, labels). Fleet-wide
# gauges and visionfleet_online_rejected are read from Redis: the same value on every worker.
FAMILIES = {
    "visionfleet_images": ("counter", {"queue", "status"}),
    "visionfleet_shard_takeovers": ("counter", set()),
    "visionfleet_commits": ("counter", set()),
    "visionfleet_cache_hits": ("counter", set()),
    "visionfleet_cache_misses": ("counter", set()),
    "visionfleet_online_rejected": ("counter", set()),
    "visionfleet_batch_size": ("histogram", set()),
    "visionfleet_stage_seconds": ("histogram", {"stage"}),
    "visionfleet_online_request_seconds": ("histogram", set()),
    "visionfleet_worker_draining": ("gauge", set()),
    "visionfleet_spot_notice": ("gauge", set()),
    "visionfleet_fault_waits": ("counter", {"fault"}),
    "visionfleet_waiting_on_fault": ("gauge", set()),
    "visionfleet_model_load_seconds": ("gauge", set()),
    "visionfleet_processes_ready": ("gauge", set()),
    "visionfleet_queue_backlog": ("gauge", {"queue"}),
    "visionfleet_backlog_images": ("gauge", set()),
    "visionfleet_desired_workers": ("gauge", set()),
    "visionfleet_workers": ("gauge", set()),
}


def _exposed() -> dict[str, set[str]]:
    """Each sample name Prometheus sees, with its labels."""
    names = {}
    for family, (kind, labels) in FAMILIES.items():
        if kind == "counter":
            names[family + "_total"] = labels
        elif kind == "histogram":
            names.update({family + "_bucket": labels | {"le"}, family + "_sum": labels, family + "_count": labels})
        else:
            names[family] = labels
    return names


EXPOSED = _exposed()


def recipe_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def used_metrics() -> set[str]:
    # The whole text of every recipe, comments included: a name in a comment misleads too.
    return {m for p in recipe_files() for m in METRIC.findall(p.read_text())}


@pytest.fixture(scope="module")
def manifests() -> dict:
    docs = [d for name in ("worker.yaml", "keda-scaledobject.yaml")
            for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text())]
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def container(manifests) -> dict:
    return manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module")
def ros() -> dict:
    return yaml.safe_load((DEPLOY / "alibaba" / "ess-spot-fleet.yaml").read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "visionfleet-dashboard.json").read_text())


def ros_resource(ros: dict, kind: str) -> dict:
    (props,) = [r["Properties"] for r in ros["Resources"].values() if r["Type"] == kind]
    return props


def graph_panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in graph_panels(dashboard) for t in p["targets"]]


def assert_worker_args_parse(args: list[str]) -> None:
    assert args[0] == "worker"
    sub = main.get_command(click.Context(main), "worker")
    sub.make_context("worker", list(args[1:]))  # raises click.UsageError if our CLI would refuse them


# --- all recipes ---------------------------------------------------------------------------

def test_every_recipe_parses():
    yamls = [p for p in recipe_files() if p.suffix in (".yaml", ".yml")]
    assert len(yamls) >= 3
    for path in yamls:
        assert all(doc is not None for doc in yaml.safe_load_all(path.read_text())), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_recipes_name_only_metrics_workers_export():
    unknown = used_metrics() - set(EXPOSED)
    assert not unknown, f"not exported by a worker: {sorted(unknown)}"


def test_the_exporter_exposes_every_metric_the_recipes_use():
    try:
        from visionfleet.workers.exporter import metric_names
    except ImportError as exc:
        pytest.fail(f"visionfleet.workers.exporter.metric_names() is needed to check the recipes: {exc}")
    exported = set(metric_names())
    assert used_metrics() <= exported, sorted(used_metrics() - exported)
    assert set(EXPOSED) <= exported, f"this file's table is out of date: {sorted(set(EXPOSED) - exported)}"


def test_every_autoscaler_follows_desired_workers(manifests, ros):
    # One signal for all of them, or the fleets would size themselves differently.
    (trigger,) = manifests["ScaledObject"]["spec"]["triggers"]
    assert METRIC.findall(trigger["metadata"]["query"]) == ["visionfleet_desired_workers"]
    assert ros_resource(ros, "ALIYUN::ESS::AlarmTask")["MetricName"] == "visionfleet_desired_workers"
    assert "visionfleet_desired_workers" in PUSH.read_text()


# --- Kubernetes ----------------------------------------------------------------------------

def test_worker_args_parse(container):
    assert_worker_args_parse(container["args"])


def test_probes_check_health_on_the_metrics_port(container):
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        assert container[probe]["httpGet"]["path"] == path, probe
        assert container[probe]["httpGet"]["port"] in ("metrics", port), probe
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120  # room for a cold model load


def test_metrics_port_agrees_everywhere(manifests, container):
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    pod = manifests["Deployment"]["spec"]["template"]["metadata"]
    assert int(env["VISIONFLEET_METRICS_PORT"]) == port == int(pod["annotations"]["prometheus.io/port"])
    service = manifests["Service"]["spec"]
    assert service["ports"][0]["targetPort"] in ("metrics", port)
    assert service["selector"].items() <= pod["labels"].items()


def test_grace_period_outlasts_the_drain(manifests, container):
    # SIGKILL before the drain ends loses the shard's uncommitted work to a takeover.
    env = {e["name"]: e.get("value") for e in container["env"]}
    grace = manifests["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(env["VISIONFLEET_DRAIN_DEADLINE_S"]) + 10
    assert env["VISIONFLEET_SPOT_NOTICE_URL"] == "off"  # SIGTERM is the node's notice here


def test_credentials_come_from_the_secret(container):
    env = {e["name"]: e for e in container["env"]}
    for name in ("VISIONFLEET_BROKER_URL", "OSS_ENDPOINT", "OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "visionfleet", name
    assert env["VISIONFLEET_BROKER_URL"]["valueFrom"]["secretKeyRef"]["key"] == "broker-url"


def test_keda_sizes_the_deployment_to_desired_workers(manifests):
    spec = manifests["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    # replicas = ceil(value / threshold): threshold 1 makes replicas the desired count.
    assert trigger.get("metricType", "AverageValue") == "AverageValue"
    assert float(trigger["metadata"]["threshold"]) == 1
    # The workers export the gauge: at zero pods there is nothing to read, so never go to zero.
    assert spec["minReplicaCount"] >= 1


# --- Alibaba Cloud ESS ---------------------------------------------------------------------

def test_ros_group_is_spot_across_zones(ros):
    group = ros_resource(ros, "ALIYUN::ESS::ScalingGroup")
    assert group["SpotInstanceRemedy"] is True
    assert ros["Parameters"][group["VSwitchIds"]["Ref"]]["Type"] == "CommaDelimitedList"
    strategy = ros["Parameters"][ros_resource(ros, "ALIYUN::ESS::ScalingConfiguration")["SpotStrategy"]["Ref"]]
    assert strategy["Default"] in ("SpotAsPriceGo", "SpotWithPriceLimit")
    assert "NoSpot" not in strategy["AllowedValues"]


def test_ros_worker_drains_within_the_spot_notice(ros):
    user_data = ros_resource(ros, "ALIYUN::ESS::ScalingConfiguration")["UserData"]["Fn::Sub"]
    assert "VISIONFLEET_SPOT_NOTICE_URL=auto" in user_data
    deadline = int(re.search(r"VISIONFLEET_DRAIN_DEADLINE_S=(\d+)", user_data).group(1))
    # Margin for the notice poll, process exit and the notice being "about" 5 minutes.
    assert deadline <= ALIBABA_SPOT_NOTICE_S - 30
    # docker stop (scale-in, reboot) must not kill the container mid-drain.
    assert int(re.search(r"--stop-timeout (\d+)", user_data).group(1)) > deadline
    hook = ros_resource(ros, "ALIYUN::ESS::LifecycleHook")
    stop = int(re.search(r"docker stop --time (\d+)", hook["NotificationMetadata"]).group(1))
    assert hook["LifecycleTransition"] == "SCALE_IN" and deadline < stop < hook["HeartbeatTimeout"]
    assert_worker_args_parse(re.search(r"\$\{WorkerImage\} (worker[^\n]*)", user_data).group(1).split())


def test_ros_alarm_sets_capacity_to_desired_workers(ros):
    alarm = ros_resource(ros, "ALIYUN::ESS::AlarmTask")
    assert alarm["MetricType"] == "custom"
    # Threshold 0 with >= : step bounds are the metric's own values.
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == ">="
    (action,) = alarm["AlarmAction"]
    rule_name, attribute = action["Fn::GetAtt"]
    rule = ros["Resources"][rule_name]["Properties"]
    assert attribute == "ScalingRuleAri" and rule["AdjustmentType"] == "TotalCapacity"
    steps = rule["StepAdjustment"]
    for before, after in zip(steps, steps[1:]):
        assert after["MetricIntervalLowerBound"] == before["MetricIntervalUpperBound"]  # no gaps
    assert all(s["ScalingAdjustment"] == s["MetricIntervalLowerBound"] for s in steps)  # n desired -> n
    assert steps[0]["MetricIntervalLowerBound"] == 0 and "MetricIntervalUpperBound" not in steps[-1]
    assert steps[-1]["ScalingAdjustment"] == ros["Parameters"]["MaxSize"]["MaxValue"]


# --- the push script -----------------------------------------------------------------------

def test_push_script_is_executable_posix_sh():
    assert PUSH.stat().st_mode & stat.S_IXUSR
    subprocess.run(["sh", "-n", str(PUSH)], check=True)


def run_push(tmp_path: Path, scale_stub: str) -> subprocess.CompletedProcess:
    """Run the push script with stand-ins for `visionfleet` and `aliyun` that log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"visionfleet": scale_stub,
             "aliyun": f'printf "%s\\n" "$@" > "{tmp_path}/aliyun.args"\necho \'{{"Code":"200"}}\''}
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VISIONFLEET_BIN", "ALIYUN_BIN", "PYTHON")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", VISIONFLEET_NAMESPACE="prod")
    return subprocess.run(["sh", str(PUSH)], env=env, capture_output=True, text=True, timeout=30)


def test_push_script_reports_what_the_alarm_reads(tmp_path, ros):
    scale = {"desired_workers": 3, "workers": 2, "busy_workers": 2, "backlog_images": 1200,
             "online_backlog": 0, "images_per_worker_s": 9.5, "reason": "test"}
    done = run_push(tmp_path, f'[ "$*" = "scale --json" ] || exit 9\necho \'{json.dumps(scale)}\'')
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "aliyun.args").read_text().splitlines()
    assert args[:2] == ["cms", "PutCustomMetric"]
    entries: dict[str, dict[str, str]] = {}
    for flag, value in zip(args[2::2], args[3::2]):
        _, n, field = flag.split(".")  # --MetricList.N.Field
        entries.setdefault(n, {})[field] = value
    pushed = {e["MetricName"]: e for e in entries.values()}
    assert {name: json.loads(e["Values"])["value"] for name, e in pushed.items()} == {
        "visionfleet_desired_workers": 3, "visionfleet_backlog_images": 1200, "visionfleet_workers": 2}
    alarm = ros_resource(ros, "ALIYUN::ESS::AlarmTask")
    desired = pushed[alarm["MetricName"]]
    assert set(json.loads(desired["Dimensions"])) == {d["DimensionKey"] for d in alarm["Dimensions"]}
    assert int(desired["Period"]) == alarm["Period"]


def test_push_script_stops_with_a_message_when_scale_fails(tmp_path):
    done = run_push(tmp_path, "echo 'redis down' >&2; exit 3")
    assert done.returncode != 0
    assert "visionfleet scale --json" in done.stderr
    assert not (tmp_path / "aliyun.args").exists()  # nothing reported from a failed read


# --- Grafana -------------------------------------------------------------------------------

def test_dashboard_identity_and_datasource(dashboard):
    assert dashboard["uid"] == "visionfleet" and dashboard["title"] == "visionfleet fleet"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in graph_panels(dashboard):
        for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_dashboard_panels_are_complete(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in graph_panels(dashboard):
        assert panel["title"].strip() and panel["description"].strip(), panel
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def balanced(expr: str) -> bool:
    closing = {")": "(", "]": "[", "}": "{"}
    stack, quote, escaped = [], None, False
    for ch in expr:
        if quote:  # inside a string: only its end matters
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in closing and (not stack or stack.pop() != closing[ch]):
            return False
    return not stack and quote is None


def test_balanced_catches_mistakes():
    assert balanced('sum(rate(x{a="(}"}[5m])) by (le)')
    assert not balanced("sum(rate(x[5m]) by (le)") and not balanced("x{a=\"b\"]")


def test_dashboard_expressions_are_balanced(dashboard):
    unbalanced = [e for e in exprs(dashboard) if not balanced(e)]
    assert not unbalanced


def test_dashboard_queries_use_labels_their_metrics_have(dashboard):
    selector = re.compile(r"(visionfleet_[a-z0-9_]+)\s*\{([^}]*)\}")
    matcher = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
    grouping = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
    for expr in exprs(dashboard):
        for name, matchers in selector.findall(expr):
            assert set(matcher.findall(matchers)) <= EXPOSED.get(name, set()), expr
        # Simple: a by() clause may use any label of any metric in the expression.
        available = set().union(*(EXPOSED.get(name, set()) for name in METRIC.findall(expr)))
        for labels in grouping.findall(expr):
            assert {label.strip() for label in labels.split(",")} - {""} <= available, expr

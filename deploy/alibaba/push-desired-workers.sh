#!/bin/sh
# Report the fleet's autoscaling signal to CloudMonitor as custom metrics, for
# the ESS alarm task in ess-spot-fleet.yaml. Run it every 60 s on one
# always-on machine (visionfleet-push.timer), with the fleet's broker settings
# in the environment (VISIONFLEET_BROKER_URL, VISIONFLEET_NAMESPACE) and an
# `aliyun` CLI configured with a key or RAM role allowed cms:PutCustomMetric.
#
# Reports, each with the dimension {"fleet": "$VISIONFLEET_NAMESPACE"}:
#   visionfleet_desired_workers  how many worker instances the fleet should have (one per ECS instance here)
#   visionfleet_backlog_images   images not yet labelled in running jobs
#   visionfleet_workers          live worker instances, as their heartbeats say
#
# Settings (environment):
#   VISIONFLEET_NAMESPACE     fleet name, also the `fleet` dimension (default vf)
#   VISIONFLEET_CMS_GROUP_ID  CloudMonitor application group id (default 0: none)
#   VISIONFLEET_BIN, ALIYUN_BIN, PYTHON  commands to run (defaults: visionfleet, aliyun, python3)
#
# CloudMonitor's operation is PutCustomMetric; its list parameter is
# MetricList, flattened on the aliyun command line as --MetricList.N.Field.
set -eu

fleet="${VISIONFLEET_NAMESPACE:-vf}"
group_id="${VISIONFLEET_CMS_GROUP_ID:-0}"
visionfleet="${VISIONFLEET_BIN:-visionfleet}"
aliyun="${ALIYUN_BIN:-aliyun}"
python="${PYTHON:-python3}"

die() {
    echo "push-desired-workers: $*" >&2
    exit 1
}

for cmd in "$visionfleet" "$aliyun" "$python"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found on PATH"
done
case "$fleet" in
    *[!a-z0-9_-]* | "") die "VISIONFLEET_NAMESPACE='$fleet' is not a fleet name (a-z, 0-9, '-', '_')" ;;
esac
case "$group_id" in
    *[!0-9]* | "") die "VISIONFLEET_CMS_GROUP_ID='$group_id' is not a number" ;;
esac

scale_json=$("$visionfleet" scale --json) ||
    die "'visionfleet scale --json' failed (exit $?); check VISIONFLEET_BROKER_URL and that Redis answers"

# Three whole numbers, or a message naming what is missing.
numbers=$(printf '%s' "$scale_json" | "$python" -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(int(d["desired_workers"]), int(d["backlog_images"]), int(d["workers"]))
except (ValueError, KeyError, TypeError) as exc:
    sys.exit("cannot read visionfleet scale --json output (%s: %s)" % (type(exc).__name__, exc))
') || die "unexpected output from 'visionfleet scale --json': $scale_json"
set -- $numbers
desired=$1 backlog=$2 workers=$3

now_ms="$(date +%s)000"
dimensions="{\"fleet\":\"$fleet\"}"

# Type 0: raw values; CloudMonitor aggregates them per 60 s period
# (the alarm task reads the period's Maximum).
set --
n=0
for metric in "visionfleet_desired_workers=$desired" "visionfleet_backlog_images=$backlog" \
        "visionfleet_workers=$workers"; do
    n=$((n + 1))
    set -- "$@" \
        "--MetricList.$n.GroupId" "$group_id" \
        "--MetricList.$n.MetricName" "${metric%%=*}" \
        "--MetricList.$n.Dimensions" "$dimensions" \
        "--MetricList.$n.Time" "$now_ms" \
        "--MetricList.$n.Type" 0 \
        "--MetricList.$n.Period" 60 \
        "--MetricList.$n.Values" "{\"value\":${metric#*=}}"
done

response=$("$aliyun" cms PutCustomMetric "$@") ||
    die "'aliyun cms PutCustomMetric' failed (exit $?): $response"
# CloudMonitor answers HTTP 200 with Code 206 when some entries were refused.
printf '%s' "$response" | "$python" -c '
import json, sys
code = str(json.load(sys.stdin).get("Code"))
sys.exit(0 if code == "200" else 1)
' 2>/dev/null || die "CloudMonitor did not accept the metrics: $response"

echo "push-desired-workers: fleet=$fleet desired_workers=$desired backlog_images=$backlog workers=$workers"

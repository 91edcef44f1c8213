"""Decode memory of a real online worker: concurrent requests for giant images wait for the decode
budget instead of each holding its picture at once (pipeline/decode_budget.py)."""
import pytest

from bench.proc_memory import tree_bytes
from bench.samples import giant_progressive_jpeg
from tests.photos import KNOWN, photo_bytes

GB = 10**9


@pytest.mark.slow
def test_concurrent_giant_progressive_jpegs_keep_the_online_worker_under_3_gb(bucket, client, workers):
    # The default pool (64 task threads) and budget; no dedup cache, so every request decodes.
    # Without the budget the twelve decodes hold ~480 MB each at once: the worker peaked near 6 GB.
    (proc,) = workers.start(1, queues="online", VISIONFLEET_ONLINE_CACHE="off")
    bucket.put_object("warm.png", photo_bytes("coffee.png"))
    warm = client.classify(f"oss://{bucket.bucket_name}/warm.png", timeout=120)  # the model is loaded
    assert warm["status"] == "ok" and warm["labels"][0]["class_id"] in KNOWN["coffee.png"]
    giant = giant_progressive_jpeg(9000)
    uris = []
    for i in range(12):
        bucket.put_object(f"giant/{i:02d}.jpg", giant)
        uris.append(f"oss://{bucket.bucket_name}/giant/{i:02d}.jpg")
    before = tree_bytes(proc.pid, "VmRSS")

    records = client.classify_many(uris, timeout=300)  # none hangs

    peak = tree_bytes(proc.pid, "VmHWM")
    print(f"\nonline worker RSS {before / GB:.2f} GB before, peak {peak / GB:.2f} GB for 12 concurrent "
          f"9000x9000 progressive JPEGs ({len(giant) / 1e6:.1f} MB each)")
    assert proc.poll() is None, workers.logs()
    assert [r["uri"] for r in records] == uris
    assert all(r["status"] == "ok" and len(r["labels"]) == 5 for r in records), records
    assert peak < 3 * GB

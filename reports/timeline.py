"""Images per second over a run, in buckets that fit its length: seconds for a minute-long job, minutes
for hours, hours for days (about 50 to 120 points; fewer only for a job shorter than two minutes).

The ledger keeps images per minute (when committed), and per second (when labelled: each commit's images
spread over the seconds it took) for up to an hour of labelling; its seconds are used when they hold every
image its minutes do. Buckets start at the run's start and the last one ends at its
end (so it may be shorter or longer than the rest, within half a bucket): each bucket's rate is its
images over its own width, and the mean of the curve over the run is the headline images per second.
"""
import math

MOST_POINTS = 120
NICE_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def bucket_s(span_s: float, finest_s: int) -> int:
    """The smallest nice bucket, no finer than the ledger's ``finest_s``, that draws ``span_s`` in at most
    ``MOST_POINTS`` points; past 120 days, whole days."""
    for size in NICE_S:
        if size >= finest_s and span_s / size <= MOST_POINTS:
            return size
    return 86400 * math.ceil(span_s / 86400 / MOST_POINTS)


def timeline(ledger: dict, start: float, end: float) -> dict:
    """``timeline_bucket_s``, ``timeline_start`` (epoch seconds of offset 0) and ``timeline``: a point per
    bucket, empty ones included, as ``{offset_s, images, images_per_s}``."""
    seconds, minutes = ledger.get("seconds") or {}, ledger["timeline"]
    # Seconds that miss images (the ledger stopped keeping them, or predates them) would draw a false dip.
    counts, finest = (seconds, 1) if seconds and sum(seconds.values()) == sum(minutes.values()) else (minutes, 60)
    span = max(end - start, 0.0)
    size = bucket_s(span, finest)
    if not counts:
        return {"timeline_bucket_s": size, "timeline_start": round(start, 3), "timeline": []}
    n = max(1, int(span / size + 0.5))  # the last bucket ends at the end: within half a bucket of the others
    images = [0] * n
    for at, count in counts.items():
        middle = int(at) + finest / 2 - start  # a ledger bucket goes where most of it lies
        images[min(max(int(middle // size), 0), n - 1)] += count
    widths = [size] * (n - 1) + [span - (n - 1) * size]
    return {"timeline_bucket_s": size, "timeline_start": round(start, 3),
            "timeline": [{"offset_s": i * size, "images": count,
                          "images_per_s": round(count / width, 3) if width > 0 else None}
                         for i, (count, width) in enumerate(zip(images, widths))]}

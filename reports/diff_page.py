"""``report.html`` of a diff: the summary, the transition heat map, the classes gained and lost,
the change rate by confidence, and the most confident changes with their pictures where we may show them."""
import base64
import io
import itertools
import json
from html import escape
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

from visionfleet.pipeline.storage import is_oss, storage_for
from visionfleet.reports import charts
from visionfleet.reports.page import cards, figure, page, paragraph, section, table

SHOWN = 24  # changed images shown with a picture
THUMB_PX = 192
THUMB_MAX_BYTES = 25 * 1024 * 1024
SIGNED_FOR_S = 7 * 24 * 3600


def render(result: dict, changed: Path, *, thumbnails: bool = False) -> str:
    """The page; ``thumbnails`` also shows OSS images, as signed URLs (local ones always show)."""
    totals = result["totals"]
    old, new = result["old"], result["new"]
    rows = list(itertools.islice(_lines(changed), SHOWN))
    pictures, hosts = _pictures(rows, thumbnails)
    matrix = result["transitions"]
    bands = result["confidence_bands"]
    sections = [
        cards([("totals.both", "in both runs", totals["both"]),
               ("totals.changed_top1", "top-1 changed", totals["changed_top1"]),
               ("totals.changed_top1_rate", "of images in both, ok", totals["changed_top1_rate"]),
               ("totals.only_old", "only in the old run", totals["only_old"]),
               ("totals.only_new", "only in the new run", totals["only_new"]),
               ("totals.errors_old", "errors, old run", totals["errors_old"]),
               ("totals.errors_new", "errors, new run", totals["errors_new"])]),
        section("The two runs", table(
            ["", "job", "model", "runtime", "precision", "int8 agreement", "images", "errors"],
            [[side, r.get("job_id"), r.get("model"), r.get("runtime"), r.get("precision"), r.get("int8_agreement"),
              r.get("total"), r.get("errors")] for side, r in (("old", old), ("new", new))],
            [[None] * 6 + [f"{side}.total", f"{side}.errors"] for side in ("old", "new")])),
        section("Where the top-1 labels went", charts.heatmap(
            matrix["classes"], matrix["columns"], matrix["matrix"], xlabel="new top-1", ylabel="old top-1"),
            paragraph("Images labelled ok by both runs, by old and new top-1 label: the most frequent classes, "
                      "the rest as \u201cother\u201d. An image whose label changed from one rarer class to "
                      "another is in the column \u201canother other\u201d. Off the diagonal is what changed: "
                      f"{totals['changed_top1']:,} images.")),
        section("Classes gained and lost", _gained_lost(result)),
        section("Change rate by the new run's confidence",
                charts.columns([f"{b['from']:.1f}\u2013{b['to']:.1f}" for b in bands],
                               [b["changed_rate"] or 0 for b in bands], ylabel="top-1 changed (share)")
                if totals["changed_top1"] else "",
                table(["new top-1 score", "images", "changed"],
                      [[f"{b['from']:.1f}\u2013{b['to']:.1f}", b["images"], b["changed"]] for b in bands])),
        section(f"Most confident changes (first {len(rows)} of {result['changed_written']} in changed.jsonl)",
                pictures),
    ]
    subtitle = f"{old.get('job_id')} ({_engine(old)}) \u2192 {new.get('job_id')} ({_engine(new)})"
    return page("What the new run changed", subtitle, sections, img_hosts=hosts)


def _engine(side: dict) -> str:
    return " ".join(str(side[k]) for k in ("model", "runtime", "precision") if side.get(k))


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _gained_lost(result: dict) -> str:
    parts = []
    for key, color, word in (("gained", "#1e7d4f", "more"), ("lost", "#b03a2e", "fewer")):
        items = result[key]
        if items:
            svg = charts.bars([d["label"] for d in items], [abs(d["delta"]) for d in items],
                              xlabel=f"images the new run labels {word}", color=color)
            parts.append(figure(svg, f"classes {key}"))
    return "".join(parts) or paragraph("No class gained or lost images.")


def _pictures(rows: list[dict], signed: bool) -> tuple[str, tuple[str, ...]]:
    """The changed images as cards, and the hosts their signed URLs point at."""
    if not rows:
        return paragraph("No image changed its top-1 label."), ()
    hosts, cells = set(), []
    for row in rows:
        src = _thumbnail(row["uri"]) if not is_oss(row["uri"]) else (_signed(row["uri"]) if signed else None)
        if src and not src.startswith("data:"):
            hosts.add(f"{urlparse(src).scheme}://{urlparse(src).netloc}")
        img = f'<img alt="" src="{escape(src, quote=True)}">' if src else ""
        cells.append(f"<figure>{img}<div>{escape(row['uri'])}</div>"
                     f'<div class="old">old: {escape(row["old"]["label"])} {row["old"]["score"]:.2f}</div>'
                     f'<div class="new">new: {escape(row["new"]["label"])} {row["new"]["score"]:.2f}</div></figure>')
    hidden = not signed and any(is_oss(row["uri"]) for row in rows)
    note = paragraph("OSS images are not shown unless asked (--thumbnails: signed URLs).") if hidden else ""
    return f'<div class="thumbs">{"".join(cells)}</div>{note}', tuple(sorted(hosts))


def _thumbnail(uri: str) -> str | None:
    try:
        with Image.open(io.BytesIO(storage_for(uri).read(uri, max_bytes=THUMB_MAX_BYTES))) as image:
            image.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except Exception:  # a picture that cannot be shown still leaves its row
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _signed(uri: str) -> str | None:
    from visionfleet.pipeline.storage.oss import parse_oss_uri

    bucket, key = parse_oss_uri(uri)
    try:
        return storage_for(uri).bucket(bucket).sign_url("GET", key, SIGNED_FOR_S)
    except Exception:
        return None

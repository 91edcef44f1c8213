"""An ended job's output, read as the output contract says: its summary and the parts it lists.

The summary is ``_SUCCESS.json`` for a job that succeeded, and ``_SUMMARY.json`` for any job that ended
(a failed one has only that; a job that succeeded before ``_SUMMARY.json`` existed has only the other)."""
import json
from collections.abc import Iterator
from dataclasses import dataclass

from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.sink import sink_for_part
from visionfleet.pipeline.storage import storage_for


@dataclass(frozen=True)
class JobOutput:
    root: str  # DEST/<job_id>
    summary: dict  # its _SUCCESS.json or _SUMMARY.json

    @classmethod
    def open(cls, root: str) -> "JobOutput":
        root = root.rstrip("/")
        storage = storage_for(root)
        for name in (layout.SUCCESS, layout.SUMMARY):
            if storage.exists(summary := layout.child(root, name)):
                return cls(root, json.loads(storage.read(summary)))
        raise VisionfleetError(
            f"{root} is not an ended job's output: it has no {layout.SUCCESS} or {layout.SUMMARY}. Give DEST/<job_id> "
            "of a job that ended (`visionfleet jobs` lists them; a running job writes them when it ends)")

    @property
    def failed(self) -> str | None:
        """Why the job failed (its summary's reason), or None if it succeeded: its records may be few, or
        mostly errors."""
        if self.summary.get("state", "succeeded") == "succeeded":
            return None
        return self.summary.get("reason") or "no reason recorded"

    @property
    def engine(self) -> dict:
        """What labelled it: model, runtime, precision (and the int8 agreement)."""
        return {key: self.summary.get(key) for key in ("model", "runtime", "precision", "int8_agreement")
                if self.summary.get(key) is not None}

    def records(self) -> Iterator[dict]:
        """Every record, part by part, in whichever format each part is (its extension says): the
        same dicts from JSON Lines and Parquet."""
        for part in self.summary["parts"]:
            yield from sink_for_part(self.root, part).read_part(part)


def top1(record: dict) -> tuple[str, float] | None:
    """(label, score) of an ``ok`` record's best label; None for an error."""
    if record.get("status") != "ok" or not record.get("labels"):
        return None
    best = record["labels"][0]
    return best["label"], float(best["score"])

"""A finished job's output, read as the output contract says: ``_SUCCESS.json`` and the parts it lists."""
import json
from collections.abc import Iterator
from dataclasses import dataclass

from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.storage import storage_for

MAX_RECORD_CHARS = 1 << 20  # one record's line; the worker writes far less (a URI, k labels)


@dataclass(frozen=True)
class JobOutput:
    root: str  # DEST/<job_id>
    summary: dict  # its _SUCCESS.json

    @classmethod
    def open(cls, root: str) -> "JobOutput":
        root = root.rstrip("/")
        storage = storage_for(root)
        success = layout.child(root, layout.SUCCESS)
        if not storage.exists(success):
            raise VisionfleetError(
                f"{root} is not a finished job's output: it has no {layout.SUCCESS}. Give DEST/<job_id> of a job "
                "that succeeded (`visionfleet jobs` lists them; a running job writes it when it ends)")
        return cls(root, json.loads(storage.read(success)))

    @property
    def engine(self) -> dict:
        """What labelled it: model, runtime, precision (and the int8 agreement)."""
        return {key: self.summary.get(key) for key in ("model", "runtime", "precision", "int8_agreement")
                if self.summary.get(key) is not None}

    def records(self) -> Iterator[dict]:
        """Every record, part by part; a line that is not a record is an error that names it."""
        storage = storage_for(self.root)
        for part in self.summary["parts"]:
            uri = layout.child(self.root, part)
            for number, line in enumerate(storage.iter_lines(uri, MAX_RECORD_CHARS), 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise VisionfleetError(f"{uri} line {number} is not a JSON record ({exc.msg}); "
                                           "was the part edited or cut short?") from None


def top1(record: dict) -> tuple[str, float] | None:
    """(label, score) of an ``ok`` record's best label; None for an error."""
    if record.get("status") != "ok" or not record.get("labels"):
        return None
    best = record["labels"][0]
    return best["label"], float(best["score"])

"""JSON Lines parts: one record a line, UTF-8, in input order."""
import json
from collections.abc import Iterator

from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.sink.base import OutputSink

MAX_RECORD_CHARS = 1 << 20  # one record's line; the worker writes far less (a URI, k labels, an embedding)


class JsonlSink(OutputSink):
    extension = ".jsonl"

    def encode(self, records: list[dict]) -> bytes:
        return to_jsonl(records)

    def read_part(self, name: str) -> Iterator[dict]:
        """A line that is not a record is an error that names it."""
        uri = layout.child(self.root, name)
        for number, line in enumerate(self.root.storage.iter_lines(uri, MAX_RECORD_CHARS), 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise VisionfleetError(f"{uri} line {number} is not a JSON record ({exc.msg}); "
                                       "was the part edited or cut short?") from None


def to_jsonl(records: list[dict]) -> bytes:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    try:
        return "".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        # A file name that is not UTF-8 holds lone surrogates (os.fsdecode): escaped, the part stays valid
        # UTF-8 and the name still round-trips (os.fsencode(json.loads(line)["uri"]) gives its bytes back).
        return "".join(line if _encodes(line) else json.dumps(r) + "\n"
                       for line, r in zip(lines, records)).encode("utf-8")


def _encodes(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

"""JSON Lines parts: one record a line, UTF-8, in input order."""
import json

from visionfleet.pipeline.sink.base import OutputSink


class JsonlSink(OutputSink):
    extension = ".jsonl"

    def encode(self, records: list[dict]) -> bytes:
        return to_jsonl(records)


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

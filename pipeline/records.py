"""The output contract's records: one per input, ``ok`` or ``error``."""
import json

from visionfleet.pipeline.access import MAX_URI_BYTES

MAX_ERROR_CHARS = MAX_URI_BYTES + 1024  # a reason may quote its URI whole, and no more


def ok_record(uri: str, labels: list[dict], model: str) -> dict:
    return {"uri": uri, "status": "ok", "labels": labels, "model": model}


def error_record(uri: str, error: str) -> dict:
    """Bounded: a 20 MB "URI" sent online (refused for its size) is not echoed whole into the result store."""
    return {"uri": _bounded(uri, MAX_URI_BYTES), "status": "error", "error": _bounded(error, MAX_ERROR_CHARS)}


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


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

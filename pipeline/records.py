"""The output contract's records: one per input, ``ok`` or ``error``."""
from visionfleet.pipeline.access import MAX_URI_BYTES

MAX_ERROR_CHARS = MAX_URI_BYTES + 1024  # a reason may quote its URI whole, and no more


def ok_record(uri: str, labels: list[dict], model: str) -> dict:
    return {"uri": uri, "status": "ok", "labels": labels, "model": model}


def error_record(uri: str, error: str) -> dict:
    """Bounded: a 20 MB "URI" sent online (refused for its size) is not echoed whole into the result store."""
    return {"uri": _bounded(uri, MAX_URI_BYTES), "status": "error", "error": _bounded(error, MAX_ERROR_CHARS)}


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


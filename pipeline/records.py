"""The output contract's records: one per input, ``ok`` or ``error``."""
from visionfleet.pipeline.access import MAX_URI_BYTES

MAX_ERROR_CHARS = MAX_URI_BYTES + 1024  # a reason may quote its URI whole, and no more


def ok_record(uri: str, labels: list[dict], model: str, model_version: str | None = None) -> dict:
    """``labels``: best first; for a multi-label model, every class at or above its threshold, which may be none."""
    return {"uri": uri, "status": "ok", "labels": labels, "model": model, "model_version": model_version}


def error_record(uri: str, error: str, model: str | None = None, model_version: str | None = None) -> dict:
    """``labels`` null: no answer, told apart from a multi-label answer of none (``[]``). ``model``: the one
    that was to label it, where one was chosen. Bounded: a 20 MB "URI" sent online (refused for its size) is
    not echoed whole into the result store."""
    record = {"uri": _bounded(uri, MAX_URI_BYTES), "status": "error", "error": _bounded(error, MAX_ERROR_CHARS),
              "labels": None}
    if model is not None:
        record.update(model=model, model_version=model_version)
    return record


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


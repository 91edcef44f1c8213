"""The output contract's records: one per input, ``ok`` or ``error``."""
import json


def ok_record(uri: str, labels: list[dict], model: str) -> dict:
    return {"uri": uri, "status": "ok", "labels": labels, "model": model}


def error_record(uri: str, error: str) -> dict:
    return {"uri": uri, "status": "error", "error": error}


def to_jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")

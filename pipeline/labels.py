"""Postprocess: class probabilities to the labels of the output contract (top k, or every class over a threshold)."""
from importlib import resources

import numpy as np

from visionfleet.pipeline.model import ModelInfo


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names, in class-id order (shipped with the project)."""
    text = resources.files("visionfleet.pipeline").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def top_k(probs: np.ndarray, k: int, class_names: list[str]) -> list[list[dict]]:
    """One list of ``{"label", "class_id", "score"}`` per row, best first."""
    k = min(k, probs.shape[1])
    # argpartition then a sort of only k columns: O(N*C) instead of a full sort.
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    rows = np.arange(probs.shape[0])[:, None]
    order = np.argsort(-probs[rows, idx], axis=1)
    idx = idx[rows, order]
    return [
        [{"label": class_names[c], "class_id": int(c), "score": round(float(p[c]), 4)} for c in row]
        for row, p in zip(idx, probs)
    ]


def labels_of(probs: np.ndarray, k: int, info: ModelInfo) -> list[list[dict]]:
    """A record's labels for each row: a multi-label model's classes at or above its threshold, best first
    (none is an answer), else the top ``k``."""
    if info.threshold is None:
        return top_k(probs, k, info.class_names)
    return [[{"label": info.class_names[c], "class_id": int(c), "score": round(float(row[c]), 4)}
             for c in np.argsort(-row, kind="stable") if row[c] >= info.threshold] for row in probs]

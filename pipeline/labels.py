"""Postprocess: class probabilities to the top-k labels of the output contract."""
from importlib import resources

import numpy as np


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

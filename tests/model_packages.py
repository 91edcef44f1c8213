"""Tiny model packages built by hand (``onnx.helper``, a few nodes): no hub, known answers.

The colours model averages each channel over the image: its logits are the mean red, green and blue,
so a red image is ``red``. ``inverted``: the logits negated, so the least present colour wins (a
different model under the same name, for a package replaced mid-job).
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.photos import jpeg

LABELS = ["red", "green", "blue"]
SIZE = 32


def colors_onnx(*, inverted: bool = False) -> bytes:
    nodes = [helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0)]
    if inverted:
        nodes.append(helper.make_node("Neg", ["means"], ["logits"]))
    else:
        nodes.append(helper.make_node("Identity", ["means"], ["logits"]))
    graph = helper.make_graph(
        nodes, "colors", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tests")
    model.ir_version = 8  # what onnxruntime reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def colors_meta(version: str = "1", *, labels_file: str | None = None) -> dict:
    meta = {"name": "colors", "version": version,
            "input": {"name": "image", "size": [SIZE, SIZE], "layout": "NCHW", "dtype": "float32",
                      "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]},
            "output": {"name": "logits", "activation": "softmax"}}
    if labels_file:
        meta["labels_file"] = labels_file
    else:
        meta["labels"] = LABELS
    return meta


def colors_files(version: str = "1", *, inverted: bool = False, labels_file: str | None = None) -> dict[str, bytes]:
    """The package's files by name: ``model.onnx``, ``model.json`` and the labels file if asked."""
    files = {"model.onnx": colors_onnx(inverted=inverted),
             "model.json": json.dumps(colors_meta(version, labels_file=labels_file)).encode()}
    if labels_file:
        files[labels_file] = "\n".join(LABELS).encode()
    return files


def write_package(folder: Path, files: dict[str, bytes]) -> str:
    """The files under ``folder``; the model file's path (the spec)."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return str(folder / "model.onnx")


def put_package(bucket, prefix: str, files: dict[str, bytes]) -> str:
    """The files under ``oss://bucket/prefix/``; the model file's URI (the spec)."""
    for name, data in files.items():
        bucket.put_object(f"{prefix}/{name}", data)
    return f"oss://{bucket.bucket_name}/{prefix}/model.onnx"


def colour_jpeg(rgb: tuple[int, int, int], size: int = 48) -> bytes:
    """A flat image of one colour."""
    return jpeg(np.full((size, size, 3), rgb, dtype=np.uint8))

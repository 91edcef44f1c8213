"""pipeline.fast_jpeg (VISIONFLEET_DECODE=fast, the default): JPEGs through libjpeg-turbo at M/8 scale and
Pillow's resize, against the Pillow path (decode_image), and everything it leaves to Pillow giving exactly
Pillow's crop or error."""
import numpy as np
import pytest
import torch
from PIL import Image

from bench.samples import PHOTOS, bundled
from visionfleet.pipeline.decode import Geometry, decode_image, open_header
from visionfleet.pipeline import preprocess
from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.fast_jpeg import decode_fast, jpeg_crop
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from tests.photos import KNOWN, mutations
from tests.test_decode import CAMERA, COFFEE, G, encode, mad, with_orientation
from tests.test_decode_budget import progressive_jpeg, recording_budget
from tests.test_labeller import CountingModel

# Mean absolute difference from the Pillow crop, grey levels: at most 1.1 on 1,000 camera-sized photos
# (the same filter on both paths; only the scale libjpeg-turbo decodes at differs).
TOLERANCE = 1.5


def camera_jpegs() -> list[bytes]:
    """The sample photos as camera-sized JPEGs, landscape and portrait."""
    out = []
    for name in PHOTOS:
        picture = Image.open(bundled(name)).convert("RGB")
        out += [encode(picture.resize(size, Image.Resampling.BICUBIC), "JPEG", quality=90)
                for size in ((1280, 960), (960, 1280))]
    return out


def fast(data: bytes, geometry: Geometry = G) -> np.ndarray | None:
    """The fast path's own crop, or None where it leaves the file to Pillow."""
    return jpeg_crop(data, open_header(data), geometry)


def test_real_photos_match_the_pillow_crop():
    for data in camera_jpegs():
        out = decode_fast(data, G)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
        assert fast(data) is not None
        assert mad(out, decode_image(data, G)) < TOLERANCE


def test_known_answers_hold_on_jpegs():
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", max_batch_size=8))
    pictures = {name: Image.open(bundled(name)).convert("RGB") for name in KNOWN}
    datas = [encode(p.resize((1280, 960)), "JPEG", quality=90) for p in pictures.values()]
    probs = model.checked_predict(np.stack([decode_fast(d, model.info.geometry) for d in datas]))
    for name, row in zip(pictures, probs):
        assert int(row.argmax()) in KNOWN[name], name


def test_truncated_jpeg_gets_pillows_error():
    data = camera_jpegs()[0]
    cut = data[: len(data) // 2]
    assert fast(cut) is None  # libjpeg-turbo's warning leaves it to Pillow
    with pytest.raises(InputError) as pillow:
        decode_image(cut, G)
    with pytest.raises(InputError, match="truncated JPEG image") as ours:
        decode_fast(cut, G)
    assert str(ours.value) == str(pillow.value)


def test_corrupt_and_mutated_jpegs_raise_only_input_errors_or_give_a_crop():
    rng = np.random.default_rng(2)
    for data in mutations(encode(COFFEE, "JPEG"), rng, 60):
        try:
            out = decode_fast(data, G)
        except InputError:
            continue
        assert out.shape == (224, 224, 3)


def test_cmyk_jpeg_is_pillows():
    data = encode(COFFEE.convert("CMYK"), "JPEG")
    assert fast(data) is None
    assert np.array_equal(decode_fast(data, G), decode_image(data, G))


def test_twelve_bit_header_is_pillows():
    # Nothing here writes a real 12-bit JPEG (Pillow and simplejpeg write 8-bit only, no cjpeg): an
    # 8-bit file whose frame header says 12-bit stands in, and gets the Pillow path's answer.
    data = bytearray(encode(COFFEE, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 12
    try:
        expected = decode_image(bytes(data), G)
    except InputError as exc:
        with pytest.raises(InputError) as ours:
            decode_fast(bytes(data), G)
        assert str(ours.value) == str(exc)
    else:
        assert np.array_equal(decode_fast(bytes(data), G), expected)


def test_progressive_jpeg():
    data = encode(COFFEE.resize((1280, 853)), "JPEG", progressive=True, quality=85)
    assert fast(data) is not None
    assert mad(decode_fast(data, G), decode_image(data, G)) < TOLERANCE


def test_greyscale_jpeg_is_grey_rgb():
    data = encode(CAMERA.resize((1024, 1024)), "JPEG")
    out = fast(data)
    assert out is not None and out.shape == (224, 224, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert mad(out, decode_image(data, G)) < TOLERANCE


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(orientation):
    # Landscape, and its centre crop one decoded pixel off centre: a box mapped the wrong way shows.
    data = with_orientation(COFFEE.resize((1806, 1200)), "JPEG", orientation)
    out = fast(data)
    assert out is not None
    assert mad(out, decode_image(data, G)) < TOLERANCE


@pytest.mark.parametrize("geometry", [Geometry(resize=256, crop=(224, 160)), Geometry(resize=None, crop=(192, 256)),
                                      Geometry(resize=160, crop=128)], ids=["tall-crop", "straight", "small"])
def test_other_geometries(geometry):
    data = with_orientation(COFFEE.resize((1280, 853)), "JPEG", 6)
    out = fast(data, geometry)
    assert out is not None and out.shape == (*geometry.size, 3)
    assert mad(out, decode_image(data, geometry)) < TOLERANCE


def test_a_jpeg_smaller_than_the_output_is_pillows():
    data = encode(COFFEE.resize((300, 200)), "JPEG", quality=95)
    assert fast(data) is None
    assert np.array_equal(decode_fast(data, G), decode_image(data, G))


@pytest.mark.parametrize("interpolation", ["bicubic", "lanczos"])
def test_other_averaging_filters_are_the_same_filter(interpolation):
    data = encode(COFFEE.resize((1280, 960)), "JPEG")
    geometry = Geometry(interpolation=interpolation)
    out = fast(data, geometry)
    assert out is not None and mad(out, decode_image(data, geometry)) < TOLERANCE


def test_nearest_and_other_formats_are_pillows():
    jpeg = encode(COFFEE.resize((1280, 960)), "JPEG")
    nearest = Geometry(interpolation="nearest")
    assert fast(jpeg, nearest) is None
    assert np.array_equal(decode_fast(jpeg, nearest), decode_image(jpeg, nearest))
    for fmt in ("PNG", "WEBP"):
        data = encode(COFFEE, fmt)
        assert np.array_equal(decode_fast(data, G), decode_image(data, G))
    with pytest.raises(InputError, match="not an image"):
        decode_fast(b"hello, I am text\n" * 4, G)


def test_the_decode_budget_holds_the_source_pixels():
    budget, held = recording_budget(10**9)
    data = progressive_jpeg(2000, 1500)
    assert fast(data) is not None
    assert decode_fast(data, G, budget=budget).shape == (224, 224, 3)
    assert held == [3_000_000, 0]
    with pytest.raises(InputError, match="truncated"):
        decode_fast(data[: len(data) // 3], G, budget=budget)  # given back after Pillow's verdict too
    assert held == [3_000_000, 0, 3_000_000, 0]
    with pytest.raises(InputError, match="image too large"):
        decode_fast(data, G, max_pixels=1_000_000, budget=budget)
    assert held == [3_000_000, 0, 3_000_000, 0]  # refused from its header: no pixels held


def test_the_setting_and_the_records_preprocess(monkeypatch, tmp_path):
    assert LoadSettings.from_env().decode == LoadSettings().decode == "fast"
    assert preprocess.current() == "2"
    monkeypatch.setenv("VISIONFLEET_DECODE", "cpu")
    settings = LoadSettings.from_env()
    assert (settings.decode, preprocess.current()) == ("cpu", "1")
    (tmp_path / "a.jpg").write_bytes(camera_jpegs()[0])
    uris = [str(tmp_path / "a.jpg")]
    fast_labeller, pillow_labeller = Labeller(CountingModel(4), LoadSettings()), Labeller(CountingModel(4), settings)
    try:
        (fast_record,) = fast_labeller.label(uris, k=1)
        (pillow_record,) = pillow_labeller.label(uris, k=1)
    finally:
        fast_labeller.close()
        pillow_labeller.close()
    # An incremental run plans for the preprocess its workers make: the other path's records are labelled again.
    assert (fast_record["preprocess"], pillow_record["preprocess"]) == ("2", "1")


"""pipeline.decode: bytes of one image file -> the model's uint8 RGB crop."""

import contextlib
import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from tests.photos import mutations
from visionfleet.pipeline.decode import DEFAULT_MAX_PIXELS, Geometry, decode_image
from visionfleet.pipeline.errors import ConfigError, InputError

G = Geometry()
CHELSEA = Image.fromarray(skimage.data.chelsea())  # 451 x 300 RGB
COFFEE = Image.fromarray(skimage.data.coffee())  # 600 x 400 RGB
CAMERA = Image.fromarray(skimage.data.camera())  # 512 x 512 L


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def reference(img: Image.Image, geometry: Geometry = G) -> np.ndarray:
    """torchvision's Resize + CenterCrop of a fully decoded RGB picture."""
    img = img.convert("RGB")
    w, h = img.size
    short, long = sorted((w, h))
    new_long = int(geometry.resize * long / short)
    new_w, new_h = (geometry.resize, new_long) if w <= h else (new_long, geometry.resize)
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = round((new_w - geometry.crop) / 2), round((new_h - geometry.crop) / 2)
    return np.asarray(img.crop((left, top, left + geometry.crop, top + geometry.crop)))


def full_decode(data: bytes) -> np.ndarray:
    return reference(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))


def paletted(img: Image.Image) -> Image.Image:
    """What a GIF can hold: 256 colours (undithered, so it stays close to the photo)."""
    return img.convert("RGB").quantize(256, dither=Image.Dither.NONE)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def png_chunks(width: int, height: int, depth: int, colour_type: int, raw: bytes | None) -> bytes:
    """A PNG written by hand, for what Pillow will not write (16-bit RGB, a bomb header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(raw)) if raw is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


# --- formats --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
@pytest.mark.parametrize("picture", [CHELSEA, COFFEE, CAMERA], ids=["chelsea", "coffee", "camera"])
def test_each_format_matches_a_full_decode(fmt, picture):
    data = encode(paletted(picture) if fmt == "GIF" else picture, fmt)
    out = decode_image(data, G)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    # Only JPEG takes the reduced-size (DCT-scaled) path; the others must be
    # torchvision's Resize + CenterCrop up to rounding.
    assert mad(out, full_decode(data)) < (2.0 if fmt == "JPEG" else 0.05)
    # ... and it is the same picture, whatever the codec did to it.
    assert mad(out, reference(picture)) < 6.0


def test_other_geometry():
    out = decode_image(encode(COFFEE, "PNG"), Geometry(resize=160, crop=128))
    assert out.shape == (128, 128, 3)
    assert mad(out, reference(COFFEE, Geometry(resize=160, crop=128))) < 0.05


def test_bad_geometry_is_a_config_error():
    with pytest.raises(ConfigError, match="crop <= resize"):
        Geometry(resize=200, crop=224)


def test_first_frame_of_animations_and_multipage_files():
    red, blue = Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")
    for fmt in ("GIF", "WEBP", "TIFF"):
        out = decode_image(encode(red, fmt, save_all=True, append_images=[blue]), G)
        assert np.abs(out.reshape(-1, 3).mean(0) - (255, 0, 0)).max() < 3, fmt


def test_multi_picture_jpeg_uses_the_first_picture():
    data = encode(COFFEE, "MPO", save_all=True, append_images=[CHELSEA])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert mad(decode_image(data, G), reference(COFFEE)) < 4.0


# --- speed path: JPEG draft ---------------------------------------------------------


def test_jpeg_draft_keeps_the_shorter_side_at_least_resize(monkeypatch):
    resized = []
    real_resize = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        resized.append(self.size)
        return real_resize(self, size, *args, **kwargs)

    for size in [(4000, 3000), (1920, 1080), (3000, 4000), (1024, 1023), (2047, 4100), (600, 257)]:
        data = encode(COFFEE.resize(size), "JPEG")
        resized.clear()
        with monkeypatch.context() as patch:
            patch.setattr(Image.Image, "resize", spy)
            decode_image(data, G)
        (decoded,) = resized
        assert min(decoded) >= G.resize, (size, decoded)
        if min(size) >= 2 * G.resize:
            assert decoded[0] < size[0], f"{size}: no reduced-size decode"


def test_12_megapixel_jpeg_matches_a_full_decode():
    data = encode(CHELSEA.resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90)
    assert mad(decode_image(data, G), full_decode(data)) < 2.0


@pytest.mark.parametrize("mode, options", [
    ("RGB", {"progressive": True}),
    ("RGB", {"subsampling": 0}),  # 4:4:4
    ("L", {}),
    ("CMYK", {}),
])
def test_reduced_size_decode_of_every_jpeg_flavour(mode, options):
    data = encode(COFFEE.resize((2000, 1500)).convert(mode), "JPEG", **options)
    assert mad(decode_image(data, G), full_decode(data)) < 2.0


# --- orientation ------------------------------------------------------------------


def with_orientation(picture: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(picture, fmt, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_a_reduced_size_jpeg(orientation):
    # Decoded at 1/4 scale, 451.5 pixels wide; the centre crop sits one pixel
    # off centre (385 - 224 is odd), so a wrongly mapped box shows.
    big = COFFEE.resize((1806, 1200))
    data = with_orientation(big, "JPEG", orientation)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert upright.size == ((1200, 1806) if orientation >= 5 else (1806, 1200))
    assert mad(decode_image(data, G), reference(upright)) < 2.0


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_in_other_formats(fmt, orientation):
    # 602 x 400: the crop is one pixel off centre here too.
    data = with_orientation(COFFEE.resize((602, 400)), fmt, orientation)
    expected = reference(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    # Sideways pictures get their two resize passes in the other order: +-1
    # rounding (MAD ~0.2); a crop one pixel off would be ~5.
    assert mad(decode_image(data, G), expected) < 0.5


# --- colour modes -------------------------------------------------------------------


def assert_colour(out: np.ndarray, rgb, tolerance: float = 1.5) -> None:
    assert np.abs(out.reshape(-1, 3).astype(float) - rgb).max() <= tolerance, out.reshape(-1, 3)[:3]


def test_greyscale():
    out = decode_image(encode(CAMERA, "PNG"), G)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert mad(out, reference(CAMERA)) < 0.05


def test_greyscale_with_alpha_over_white():
    grey = CAMERA.convert("LA")
    grey.putalpha(0)
    assert_colour(decode_image(encode(grey, "PNG"), G), (255, 255, 255))


def test_bilevel():
    half = Image.new("1", (200, 100), 0)
    half.paste(1, (100, 0, 200, 100))
    out = decode_image(encode(half, "PNG"), G)
    assert_colour(out[:, :100], (0, 0, 0))
    assert_colour(out[:, 124:], (255, 255, 255))


def test_rgba_composited_over_white():
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert_colour(decode_image(encode(clear, "PNG"), G), (255, 255, 255))
    half_black = Image.new("RGBA", (64, 64), (0, 0, 0, 128))
    assert_colour(decode_image(encode(half_black, "PNG"), G), (127, 127, 127))
    opaque = CHELSEA.convert("RGBA")
    assert mad(decode_image(encode(opaque, "PNG"), G), reference(CHELSEA)) < 0.05
    webp = decode_image(encode(clear, "WEBP", lossless=True), G)
    assert_colour(webp, (255, 255, 255))


def test_premultiplied_alpha_tiff():
    data = encode(Image.new("LA", (64, 48), (64, 128)), "TIFF")
    unassociated = b"\x52\x01\x03\x00\x01\x00\x00\x00\x02\x00"  # ExtraSamples = 2
    data = data.replace(unassociated, unassociated[:-2] + b"\x01\x00")  # 1: associated
    assert Image.open(io.BytesIO(data)).mode == "La"
    # 64 is already multiplied by alpha 128/255: over white, 64 + 127.
    assert_colour(decode_image(data, G), (191, 191, 191))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt):
    pal = Image.new("P", (200, 100), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (100, 0, 200, 100))  # left: index 0 (transparent), right: red
    out = decode_image(encode(pal, fmt, transparency=0), G)
    assert_colour(out[:, :100], (255, 255, 255))
    assert_colour(out[:, 124:], (255, 0, 0))


def test_palette_picture():
    pal = CHELSEA.convert("P")
    assert mad(decode_image(encode(pal, "PNG"), G), reference(pal)) < 0.05


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    data = encode(CHELSEA.convert("CMYK"), fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    if fmt == "JPEG":  # Pillow writes Adobe-style inverted CMYK
        assert Image.open(io.BytesIO(data)).info.get("adobe") is not None
    assert mad(decode_image(data, G), reference(CHELSEA)) < 2.0


def test_ycbcr_tiff():
    data = encode(CHELSEA.convert("YCbCr"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert mad(decode_image(data, G), reference(CHELSEA)) < 2.0


def grey16(value: int, mode: str = "I;16") -> Image.Image:
    dtype = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, (64, 48), np.full((48, 64), value, dtype).tobytes())


@pytest.mark.parametrize("value, expected", [(0, 0), (32768, 128), (65535, 255), (257 * 200, 200)])
def test_16_bit_grey_png_is_scaled_not_clipped(value, expected):
    data = encode(grey16(value), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert_colour(decode_image(data, G), (expected,) * 3, tolerance=0)


def test_16_bit_big_endian_tiff():
    data = encode(grey16(32768, "I;16B"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    assert_colour(decode_image(data, G), (128, 128, 128), tolerance=0)


def test_a_tiff_pillow_has_no_mode_for_is_called_unsupported_not_corrupt():
    import tifffile  # scikit-image's own TIFF writer; Pillow cannot write 64-bit floats

    data = io.BytesIO()
    tifffile.imwrite(data, np.linspace(0.0, 1.0, 64 * 48).reshape(48, 64))  # float64, a valid TIFF
    with pytest.raises(InputError) as refused:
        decode_image(data.getvalue(), G)
    reason = str(refused.value)
    assert reason.startswith("unsupported image mode (64-bit float TIFF): Pillow cannot read these pixels")
    assert "corrupt" not in reason and "convert it to 8- or 16-bit integer or 32-bit float samples" in reason


def test_16_bit_picture_keeps_its_detail():
    wide = np.asarray(CAMERA).astype(np.uint16) * 257
    out = decode_image(encode(Image.fromarray(wide), "PNG"), G)
    assert mad(out, reference(CAMERA)) < 0.6


@pytest.mark.parametrize("mode, value, expected", [
    ("I", 32768, 128),  # 16-bit range in a 32-bit image
    ("I", 200, 200),  # 8-bit range
    ("F", 0.5, 128),  # 0..1 floats
    ("F", 100.0, 100),  # 0..255 floats
])
def test_32_bit_int_and_float_tiff(mode, value, expected):
    data = encode(Image.new(mode, (64, 48), value), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    assert_colour(decode_image(data, G), (expected,) * 3, tolerance=1)


def test_16_bit_rgb_and_rgba_png():
    rgb = (b"\x00" + struct.pack(">HHH", 65535, 32768, 0) * 8) * 8
    assert_colour(decode_image(png_chunks(8, 8, 16, 2, rgb), G), (255, 128, 0))
    clear = (b"\x00" + struct.pack(">HHHH", 0, 0, 0, 0) * 8) * 8
    assert_colour(decode_image(png_chunks(8, 8, 16, 6, clear), G), (255, 255, 255))


# --- tiny and extreme pictures ----------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (10, 3000), (3000, 10), (2, 1), (224, 224)])
def test_tiny_and_extreme_aspect(size):
    picture = COFFEE.resize(size)
    for fmt in ("PNG", "JPEG"):
        out = decode_image(encode(picture, fmt), G)
        assert out.shape == (224, 224, 3)
    assert mad(decode_image(encode(picture, "PNG"), G), reference(picture)) < 0.5


def test_single_pixel_fills_the_crop():
    dot = encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")
    assert_colour(decode_image(dot, G), (10, 200, 30), tolerance=0)


# --- bad inputs -------------------------------------------------------------------


def assert_input_error(data: bytes, words: str, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        decode_image(data, G, **kwargs)
    assert words in str(caught.value), str(caught.value)
    return str(caught.value)


def test_empty_file():
    assert_input_error(b"", "empty file")


def test_random_bytes_and_text_are_not_images():
    assert_input_error(np.random.default_rng(0).bytes(5000), "not an image")
    assert_input_error(b"hello, I am text, not a picture\n" * 20, "not an image")
    assert_input_error(b"%PDF-1.7\n" + b"0" * 100, "not an image")


def test_unsupported_image_format_is_not_an_image():
    assert_input_error(encode(CHELSEA, "PPM"), "not an image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_truncated_files(fmt):
    data = encode(paletted(CHELSEA) if fmt == "GIF" else CHELSEA, fmt)
    assert_input_error(data[: len(data) // 2], "truncated")


def test_truncated_header():
    assert_input_error(encode(CHELSEA, "JPEG")[:100], "truncated")


def test_corrupt_header():
    assert_input_error(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG image")


def test_declared_huge_png_is_rejected_from_its_header():
    message = assert_input_error(png_chunks(100_000, 100_000, 8, 2, raw=None), "image too large")
    assert message == (
        "image too large: 100000 x 100000 = 10000000000 pixels, over the limit of "
        f"{DEFAULT_MAX_PIXELS}; raise VISIONFLEET_MAX_PIXELS to allow it"
    )


def test_declared_huge_gif_is_rejected_from_its_header():
    gif = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen size
    assert_input_error(bytes(gif), "image too large: 65535 x 65535")


@contextlib.contextmanager
def no_bomb_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def test_max_pixels_is_the_callers():
    assert_input_error(encode(CHELSEA, "PNG"), "over the limit of 1000", max_pixels=1000)


def test_max_pixels_above_pillows_default_decodes(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")  # 100 MP in 12 KB
    assert_input_error(bomb, "image too large")
    with no_bomb_warning():
        out = decode_image(bomb, G, max_pixels=200_000_000)
    assert_colour(out, (0, 0, 0), tolerance=0)
    assert Image.MAX_IMAGE_PIXELS == 200_000_000  # Pillow's guard raised to ours, never lowered


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "TIFF", "JPEG"])
def test_pillows_own_guard_never_overrides_ours(monkeypatch, fmt):
    # Pillow errors above twice its limit (also while loading TIFF and GIF):
    # a limit the caller raised must still hold.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with no_bomb_warning():
        data = encode(paletted(COFFEE) if fmt == "GIF" else COFFEE, fmt)
        out = decode_image(data, G, max_pixels=10**6)
    assert mad(out, reference(COFFEE)) < 6.0


def test_mutated_files_raise_only_input_errors():
    rng = np.random.default_rng(1)
    small = COFFEE.resize((90, 60))
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        for data in mutations(encode(paletted(small) if fmt == "GIF" else small, fmt), rng, 40):
            try:
                out = decode_image(data, G)
            except InputError:
                continue
            assert out.shape == (224, 224, 3)


def test_concurrent_decodes_agree_with_sequential_ones():
    inputs = [encode(p, f) for p in (CHELSEA, COFFEE, CAMERA) for f in ("JPEG", "PNG", "WEBP")] * 4
    expected = [decode_image(d, G) for d in inputs]
    with ThreadPoolExecutor(8) as pool:
        for got, want in zip(pool.map(lambda d: decode_image(d, G), inputs), expected):
            assert np.array_equal(got, want)

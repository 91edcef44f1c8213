"""Raw image bytes -> the model's input crop (uint8 RGB, height x width x 3), with Pillow.

Header first: the format is identified and the pixel count checked before a
single pixel is decoded. JPEG is then decoded at a reduced DCT scale, only the
centre-crop region is resampled, and orientation and colour mode are fixed on
the small result. A change here that changes a crop bumps its preprocess
version (preprocess.py). Runs in a thread pool: Pillow's decoders and resampler
release the GIL, and nothing here holds a lock while decoding. With a decode
budget (decode_budget.py), the pixel work waits until its source pixels fit.
"""

from __future__ import annotations

import io
import threading
from contextlib import nullcontext
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Importing the plugins registers their openers in Image.OPEN, which open_header uses.
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin  # noqa: F401
from PIL import PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.errors import ConfigError, InputError

# Pillow's own default guard (1 GiB / 4 / 3): enough for every mainstream
# camera (up to 61 MP) and 48/50 MP phone modes. At the limit a non-JPEG
# decode peaks near 0.4 GB (Pillow keeps 4 bytes a pixel), ~0.7 GB with alpha
# (resize makes a premultiplied copy): several at once must fit a worker. A
# progressive JPEG needs a similar coefficient buffer even when reduced-size
# decoded, so the limit applies to every format. Being equal to Pillow's also
# means the default never needs to touch Pillow's global (_let_pillow_allow).
DEFAULT_MAX_PIXELS = 89_478_485

# Source pixels one process may be decoding at once (decode_budget.py): 1.5
# images at the limit, 2**27. Peak bytes a source pixel, measured (Pillow 13):
# WebP 16 (libwebp's canvas and Pillow's copy), RGBA PNG 8, progressive 4:4:4
# JPEG 6, RGB PNG or TIFF 4. So decoding takes at most ~2.2 GB whatever the
# format (~0.8 GB of progressive JPEGs), and an online worker (~0.7 GB of its
# own) stays under 3 GB however many threads ask. Eleven 12 MP photos fit at
# once: eight io_threads never wait on camera photos.
DEFAULT_DECODE_BUDGET = 2**27

_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_ORIENTATION_TAG = 0x0112
_UPRIGHT = {  # EXIF orientation -> the transpose that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_pillow_limit_lock = threading.Lock()

# (file bytes, its opened header, geometry) -> the crop, or None to leave the file to Pillow: a faster
# JPEG path (fast_jpeg.py) that decode_image tries first, inside the same checks and budget.
JpegCrop = Callable[[bytes, Image.Image, "Geometry"], "np.ndarray | None"]


# The resampling filters a model may ask for (model.json "interpolation"). The default, BILINEAR
# (antialiased), is what torchvision's Resize does on PIL images, the preprocessing ImageNet weights are
# trained and evaluated with. Resampling only the crop box makes the filter's cost negligible (BICUBIC: 7%
# slower), so no reducing_gap either: it bought nothing measurable and changes pixels.
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class Geometry:
    """How a model wants its input, ``size`` (height, width) RGB: with ``resize``, the shorter side resized to it
    and the centre cropped (torchvision's Resize + CenterCrop); without, the whole picture resized straight
    to the output size (aspect not kept). ``crop`` is the output's side, or its (height, width)."""

    resize: int | None = 256
    crop: int | tuple[int, int] = 224
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if not isinstance(self.crop, int):  # one spelling per geometry: a square is its side
            height, width = self.crop
            object.__setattr__(self, "crop", height if height == width else (height, width))
        if min(self.size) <= 0 or (self.resize is not None and max(self.size) > self.resize):
            raise ConfigError(f"bad model geometry {self}: need 0 < crop <= resize")
        if self.interpolation not in FILTERS:
            raise ConfigError(f"bad model geometry {self}: interpolation is one of {', '.join(FILTERS)}")

    @property
    def size(self) -> tuple[int, int]:
        """The output's (height, width)."""
        return (self.crop, self.crop) if isinstance(self.crop, int) else self.crop


def decode_image(
    data: bytes, geometry: Geometry, *, max_pixels: int = DEFAULT_MAX_PIXELS, budget: PixelBudget | None = None,
    jpeg: JpegCrop | None = None
) -> np.ndarray:
    """Return a uint8 RGB array of shape (height, width, 3), C-contiguous.

    The crop is torchvision's Resize(geometry.resize) + CenterCrop(geometry.crop)
    (bilinear unless the geometry says otherwise; without resize, the whole
    picture resized to the crop's size) of the upright (EXIF-oriented) picture, alpha composited over
    white; exact up to rounding, except that a JPEG is decoded at a reduced
    scale first (within about one grey level on average, same top-1).
    Raises InputError, with a specific message, for anything that is not a
    complete, supported image (JPEG, PNG, WebP, GIF, BMP, TIFF) of at most
    `max_pixels` pixels; first frame/page only.
    With a `budget`, the pixel work waits for the picture's source pixels there
    (the header is read and checked first, and the budget given back at the end).
    With ``jpeg``, a JPEG is first offered to it (under the same checks and budget); what it
    leaves (None) Pillow decodes, so a bad file gets Pillow's error.
    """
    if not data:
        raise InputError("empty file")
    _let_pillow_allow(max_pixels)
    img = open_header(data)
    width, height = img.size
    if width * height > max_pixels:
        raise InputError(
            f"image too large: {width} x {height} = {width * height} pixels, over the "
            f"limit of {max_pixels}; raise VISIONFLEET_MAX_PIXELS to allow it"
        )
    try:
        return _budgeted_crop(img, geometry, budget, jpeg, data)
    except MemoryError:
        raise  # the host is short of memory: not this input's fault
    except Exception as exc:
        # Pillow signals bad data with many exception types (its own fuzzer
        # accepts any Exception), so all of them are about this input.
        raise InputError(_describe(exc, img.format, data)) from exc


def open_header(data: bytes) -> Image.Image:
    """Parse the header only: Image.open restricted to our formats, minus its
    bomb check, which would fire before ours with a vaguer message."""
    head = data[:16]
    for fmt in _FORMATS:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(head)
        if isinstance(verdict, str):  # recognised, but the codec is missing
            raise InputError(f"unsupported image: {verdict}")
        if verdict:
            try:
                return factory(io.BytesIO(data), None)
            except MemoryError:
                raise
            except Exception as exc:
                raise InputError(_describe(exc, fmt, data)) from exc
    raise InputError(
        f"not an image (or not one of {', '.join(_FORMATS)}): "
        f"{len(data)} bytes starting {data[:12]!r}"
    )


def source_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The source pixels ``decode_image`` takes its budget for, or 0 for a file it refuses before any
    pixel work (empty, no readable header, over ``max_pixels``): for a decode done in another process."""
    try:
        img = open_header(data) if data else None
    except InputError:
        return 0
    if img is None:
        return 0
    with img:
        pixels = img.size[0] * img.size[1]
    return pixels if pixels <= max_pixels else 0


def _budgeted_crop(img: Image.Image, geometry: Geometry, budget: PixelBudget | None, jpeg: JpegCrop | None,
                   data: bytes) -> np.ndarray:
    # Source pixels, whatever the draft scale: a progressive JPEG holds all its coefficients.
    with budget.hold(img.size[0] * img.size[1]) if budget is not None else nullcontext():
        try:
            crop = jpeg(data, img, geometry) if jpeg is not None and img.format == "JPEG" else None
            return crop if crop is not None else _crop(img, geometry)
        finally:
            img.close()  # its pixels are freed before their budget goes to the next decode


def _crop(img: Image.Image, geometry: Geometry) -> np.ndarray:
    stored_size = img.size
    # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale, keeping both sides
    # >= `resize` (without it, >= the output's longer side), so what is kept
    # still needs downscaling (never upscaling).
    side = geometry.resize or max(geometry.size)
    draft = img.draft("RGB", (side, side))
    img.load()
    # Read after load: Pillow's TIFF loader already applies (and drops) it.
    orientation = orientation_of(img)
    box = crop_box(stored_size, geometry, orientation)
    if draft is not None:
        scale = stored_size[0] / draft[1][2]
        box = tuple(v / scale for v in box)
    img = _resizable(img)
    out = img.resize(stored_out_size(geometry.size, orientation), FILTERS[geometry.interpolation], box)
    if orientation in _UPRIGHT:
        out = out.transpose(_UPRIGHT[orientation])
    return _rgb_array(out)


def stored_out_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The (width, height) to resample the stored box to, for an upright output of ``size`` (height,
    width): swapped for a picture stored sideways, whose transpose comes after."""
    height, width = size
    return (height, width) if orientation >= 5 else (width, height)


def crop_box(
    stored_size: tuple[int, int], geometry: Geometry, orientation: int
) -> tuple[float, float, float, float]:
    """The source-pixel box that Resize + CenterCrop of the upright picture keeps (without resize,
    the whole picture).

    Resampling just this box to the output size gives the same pixels as resizing
    the whole picture and cropping, at a fraction of the cost. The box is
    computed upright (torchvision's rounding) and mapped back to the stored
    pixels, so the transpose can be done on the small crop.
    """
    if geometry.resize is None:
        return 0.0, 0.0, float(stored_size[0]), float(stored_size[1])
    width, height = stored_size
    if orientation >= 5:  # stored sideways
        width, height = height, width
    short, long = sorted((width, height))
    new_long = int(geometry.resize * long / short)
    new_w, new_h = (geometry.resize, new_long) if width <= height else (new_long, geometry.resize)
    crop_h, crop_w = geometry.size
    left = int(round((new_w - crop_w) / 2.0))
    top = int(round((new_h - crop_h) / 2.0))
    sx, sy = width / new_w, height / new_h
    x0, y0, x1, y1 = left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy
    if orientation >= 5:
        x0, y0, x1, y1 = y0, x0, y1, x1
    if orientation in (2, 3, 7, 8):
        x0, x1 = stored_size[0] - x1, stored_size[0] - x0
    if orientation in (3, 4, 6, 7):
        y0, y1 = stored_size[1] - y1, stored_size[1] - y0
    # Float rounding must not push the box past the edges: resize rejects that.
    return max(x0, 0.0), max(y0, 0.0), min(x1, stored_size[0]), min(y1, stored_size[1])


# EXIF orientations 1-4 as (row step, column step): none, mirrored, turned half round, flipped.
_FLIPS = {2: (1, -1), 3: (-1, -1), 4: (-1, 1)}


def upright_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's transpose for an EXIF orientation (``_UPRIGHT``), on an HWC array (a view)."""
    if orientation >= 5:  # stored sideways: transposed, then flipped as 1-4 are (ROTATE_270 = transpose + mirror)
        pixels, orientation = pixels.transpose(1, 0, 2), orientation - 4
    rows, cols = _FLIPS.get(orientation, (1, 1))
    return pixels[::rows, ::cols]


def orientation_of(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return value if value in _UPRIGHT else 1
    except Exception:  # broken EXIF must not cost us a readable picture
        return 1


def _resizable(img: Image.Image) -> Image.Image:
    """An 8-bit mode that resize filters properly: it would fall back to
    NEAREST for palette and bilevel images, and rejects 16-bit ones."""
    if img.mode.startswith(("I", "F")):
        return _to_8bit(img)
    if img.mode in ("1", "P", "PA") or "transparency" in img.info:
        # A palette or colour key may carry transparency: keep it as alpha.
        if img.has_transparency_data:
            return img.convert("RGBA")
        return img.convert("L" if img.mode == "1" else "RGB")
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit, int32 and float greyscale to 0..255; Pillow's own
    convert clips instead, which turns 16-bit mid-grey (32768) white."""
    if img.mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8))
    values = np.nan_to_num(np.asarray(img, dtype=np.float32))
    # int32 and float pixels have no standard range: take the smallest usual
    # one (0..1, 0..255, 0..65535) that holds the data, else the data's max.
    top = float(values.max(initial=0.0))
    top = next((t for t in (1.0, 255.0, 65535.0) if top <= t), top)
    scaled = np.clip(values * (255.0 / top) + 0.5, 0, 255)
    return Image.fromarray(scaled.astype(np.uint8))


def _rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBa", "La"):  # premultiplied, e.g. TIFF associated alpha
        img = img.convert(img.mode.upper())
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba)  # composite over white
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8, order="C")


# TIFF SampleFormat values (TIFF 6.0, p. 80) and how a reason names them.
_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "float", 4: "untyped", 5: "complex integer",
                   6: "complex float"}


def _describe(exc: Exception, fmt: str | None, data: bytes) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large ({fmt}): {text}"
    if "unknown pixel mode" in str(exc):  # a valid file whose pixel layout Pillow has no mode for
        return (f"unsupported image mode ({_pixel_layout(exc.__context__, fmt)}): Pillow cannot read these "
                "pixels; convert it to 8- or 16-bit integer or 32-bit float samples (e.g. with tifffile or GDAL)")
    # libwebp only says "could not create decoder"; the RIFF header knows better.
    short_riff = fmt == "WEBP" and int.from_bytes(data[4:8], "little") + 8 > len(data)
    kind = "truncated" if short_riff or "truncated" in text.lower() else "corrupt"
    return f"{kind} {fmt} image: {text}"


def _pixel_layout(lookup: BaseException | None, fmt: str | None) -> str:
    """"64-bit float TIFF", from the key Pillow's TIFF plugin failed to find a mode for:
    (byte order, photometric, sample formats, fill order, bits per sample, extra samples)."""
    key = lookup.args[0] if isinstance(lookup, KeyError) and lookup.args else None
    if not (isinstance(key, tuple) and len(key) == 6 and key[2] and key[4]):
        return f"{fmt} pixel layout"
    kinds = {_SAMPLE_FORMATS.get(f, f"sample format {f}") for f in key[2]}
    return f"{'/'.join(map(str, sorted(set(key[4]))))}-bit {' and '.join(sorted(kinds))} {fmt}"


def _let_pillow_allow(max_pixels: int) -> None:
    """Make Pillow's process-wide bomb guard admit whatever our check admits.

    Pillow re-checks Image.MAX_IMAGE_PIXELS while loading (TIFF, GIF frames),
    warning above it and raising above twice it, and has no per-call limit.
    warnings.catch_warnings would not stop the error and is not thread-safe
    (it swaps the process-wide filter list, so concurrent decodes could leave
    it corrupted). So when a caller allows more than Pillow does, we raise
    Pillow's limit to the caller's: only upwards, only to a value the operator
    chose, and our own check still runs first on every image.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or limit >= max_pixels:
        return
    with _pillow_limit_lock:  # so a lower limit never overwrites a higher one
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and limit < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels

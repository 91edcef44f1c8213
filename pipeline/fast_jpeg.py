"""VISIONFLEET_DECODE=fast: JPEGs through libjpeg-turbo (simplejpeg) and OpenCV, the rest through Pillow.

Why: decode is what the cores spend most on. libjpeg-turbo decodes at any M/8 scale (3/8, 5/8...,
not only Pillow's draft 1/2, 1/4, 1/8), so the smallest scale that still covers the crop's box at
the output size is chosen, and OpenCV's SIMD area resize makes the crop from just that box. It
differs from the Pillow path by a few grey levels (README "Speed"), hence its own FAST_PREPROCESS; and
as its top-1 agreement with the Pillow path is below the 99.5% asked for, it is not the default.

Only what it matches well takes it: an 8-bit RGB or greyscale JPEG, a model asking for bilinear
resampling, a picture at least as large as the output (no upscaling). Everything else, and every file libjpeg-turbo complains about (truncated, corrupt,
even a warning), goes to ``decode_image``'s Pillow path, so it gets exactly today's crop or error.
Header, pixel limit and decode budget are ``decode_image``'s own: this is only its JPEG step.
"""
import math

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from visionfleet.pipeline.decode import DEFAULT_MAX_PIXELS, Geometry, crop_box, decode_image, orientation_of, \
    stored_out_size, upright_array
from visionfleet.pipeline.decode_budget import PixelBudget

# The worker decodes one image per load thread already; OpenCV's own thread pool on top would run
# cores x threads resize jobs on the same cores, and the small crop gains nothing from splitting.
cv2.setNumThreads(0)


def decode_fast(data: bytes, geometry: Geometry, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                budget: PixelBudget | None = None) -> np.ndarray:
    """``decode_image`` with JPEGs decoded by libjpeg-turbo at a reduced scale and resized by OpenCV."""
    return decode_image(data, geometry, max_pixels=max_pixels, budget=budget, jpeg=jpeg_crop)


def jpeg_crop(data: bytes, img: Image.Image, geometry: Geometry) -> np.ndarray | None:
    """The crop of a JPEG whose header ``img`` is, or None for one the Pillow path should take."""
    if geometry.interpolation != "bilinear" or img.mode not in ("RGB", "L") or img.bits != 8:
        return None
    orientation = orientation_of(img)
    width, height = img.size
    x0, y0, x1, y1 = crop_box(img.size, geometry, orientation)
    out_w, out_h = stored_out_size(geometry.size, orientation)
    if x1 - x0 < out_w or y1 - y0 < out_h:  # upscaled: OpenCV's area filter would show blocks
        return None
    try:  # strict: anything libjpeg-turbo warns about is left to Pillow, which judges it as it always has
        pixels = simplejpeg.decode_jpeg(data, "rgb", min_width=math.ceil(width * out_w / (x1 - x0)),
                                        min_height=math.ceil(height * out_h / (y1 - y0)))
    except MemoryError:
        raise  # the host is short of memory: Pillow would be too
    except Exception:  # ValueError for libjpeg-turbo's errors and warnings; any other is Pillow's to judge too
        return None
    sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
    rows = _span(y0 * sy, y1 * sy, pixels.shape[0])
    cols = _span(x0 * sx, x1 * sx, pixels.shape[1])
    crop = cv2.resize(pixels[rows, cols], (out_w, out_h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(upright_array(crop, orientation))


def _span(start: float, end: float, size: int) -> slice:
    """Whole decoded pixels nearest a sub-pixel box side (off by at most half a decoded pixel), never empty."""
    lo = min(int(round(start)), size - 1)
    return slice(lo, max(min(int(round(end)), size), lo + 1))

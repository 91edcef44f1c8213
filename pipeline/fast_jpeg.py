"""The default JPEG step (VISIONFLEET_DECODE=fast): libjpeg-turbo at any M/8 scale, then Pillow's resize.

Why: decode is what the cores spend most on, and most of a decode is spent on pixels the crop throws
away. libjpeg-turbo (through simplejpeg, which releases the GIL) decodes at any M/8 scale (3/8, 5/8...,
not only Pillow's draft 1/2, 1/4, 1/8), so the smallest scale that still covers the crop's box at the
output size is chosen: about 1.1x the Pillow path's rate on camera photos (README "Speed"). The box is
then resampled by the same Pillow filter as the Pillow path, at its exact sub-pixel position, so the
crops stay within half a grey level of the Pillow path's on average; they are not identical (the
decode scale differs), hence its own preprocess version, decode.PREPROCESS.

Only what it matches well takes it: an 8-bit RGB or greyscale JPEG, a picture at least as large as the
output (no upscaling), a filter that averages (not ``nearest``, whose one source pixel per output pixel
would come from another decode scale). Everything else, and every file libjpeg-turbo complains about (truncated, corrupt,
even a warning), goes to ``decode_image``'s Pillow path, so it gets exactly that crop or error.
Header, pixel limit and decode budget are ``decode_image``'s own: this is only its JPEG step.
"""
import math

import numpy as np
import simplejpeg
from PIL import Image

from visionfleet.pipeline.decode import DEFAULT_MAX_PIXELS, FILTERS, Geometry, crop_box, decode_image, \
    orientation_of, stored_out_size, upright_array
from visionfleet.pipeline.decode_budget import PixelBudget


def decode_fast(data: bytes, geometry: Geometry, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                budget: PixelBudget | None = None) -> np.ndarray:
    """``decode_image`` with JPEGs decoded by libjpeg-turbo at a reduced scale."""
    return decode_image(data, geometry, max_pixels=max_pixels, budget=budget, jpeg=jpeg_crop)


def jpeg_crop(data: bytes, img: Image.Image, geometry: Geometry) -> np.ndarray | None:
    """The crop of a JPEG whose header ``img`` is, or None for one the Pillow path should take."""
    if geometry.interpolation == "nearest" or img.mode not in ("RGB", "L") or img.bits != 8:
        return None
    orientation = orientation_of(img)
    width, height = img.size
    x0, y0, x1, y1 = crop_box(img.size, geometry, orientation)
    out_w, out_h = stored_out_size(geometry.size, orientation)
    if x1 - x0 < out_w or y1 - y0 < out_h:  # upscaled: the Pillow path's draft keeps more pixels for that
        return None
    try:  # strict: anything libjpeg-turbo warns about is left to Pillow, which judges it as it always has
        pixels = simplejpeg.decode_jpeg(data, "rgb", min_width=math.ceil(width * out_w / (x1 - x0)),
                                        min_height=math.ceil(height * out_h / (y1 - y0)))
    except MemoryError:
        raise  # the host is short of memory: Pillow would be too
    except Exception:  # ValueError for libjpeg-turbo's errors and warnings; any other is Pillow's to judge too
        return None
    # The scale is M/8 on both sides; the decoded sides are rounded up (a last, partial row), so the
    # factor is taken from the wider side and not from each side's ratio.
    scale = round(8 * pixels.shape[1] / width) / 8 if width >= height else round(8 * pixels.shape[0] / height) / 8
    crop = Image.fromarray(pixels).resize((out_w, out_h), FILTERS[geometry.interpolation],
                                          (x0 * scale, y0 * scale, x1 * scale, y1 * scale))
    return np.ascontiguousarray(upright_array(np.asarray(crop), orientation))

"""JPEG decode on the GPU (nvJPEG, through torchvision) for workers whose model runs on CUDA.

Why: a GPU labels thousands of images a second, and decoding them on the
CPU becomes the limit. Here a JPEG's header is still read on the CPU (format,
size, EXIF orientation, the same pixel limit as ``decode_image``) in the
load thread; then each model batch's JPEGs are decoded in one batched nvJPEG
call, cropped and resized on the GPU, and only the small crops come back.
Everything else takes the CPU path, ``decode_image``: other formats, CMYK
and other modes nvJPEG cannot turn into RGB, files that do not end with the
JPEG end marker (so a truncated file gets the CPU path's error record, not a
half-grey label), very large pictures (a float copy of one would take
gigabytes of GPU memory) and any file the GPU decoder rejects. A bad input
therefore gets the same error record on either path.
"""
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from visionfleet.pipeline.decode import DEFAULT_MAX_PIXELS, Geometry, crop_box, decode_image, open_header, \
    orientation_of, stored_out_size
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.preprocess import DECODERS

log = logging.getLogger(__name__)

# Decoded pixels one GPU call may hold (about 0.8 GB as RGB); a batch of larger photos takes several calls.
BATCH_PIXELS = 256_000_000

# Above this the CPU path is both safe and quick: libjpeg decodes such a
# picture at 1/4 or 1/8 scale, while the GPU would hold it whole, as floats.
GPU_MAX_PIXELS = 24_000_000

_EOI = b"\xff\xd9"

# (data, geometry, *, max_pixels, budget) -> a uint8 crop, like decode_image, or a Deferred one for ``finish``
Decode = Callable[..., "np.ndarray | Deferred"]


def pick_decoder(choice: str, device: str) -> Decode:
    """The decoder for a worker whose model runs on ``device``: ``fast`` (the default: JPEGs through
    libjpeg-turbo, fast_jpeg.py; the rest through Pillow), ``cpu`` (Pillow) or ``gpu``.

    Why a CPU decode is the default even on a GPU worker: measured on an H200, the batched GPU
    call decoded 2.9x as fast as 16 CPU threads, yet a worker labelled 367 images/s with
    it against 497 with the CPU path (one run each). Its crop calls run per image, on the
    thread that also runs the model; why that loses was not measured further.
    """
    check_decoder(choice, device)
    if choice == "fast":
        from visionfleet.pipeline.fast_jpeg import decode_fast  # only a process decoding this way loads simplejpeg

        return decode_fast
    return decode_image if choice == "cpu" else GpuJpegDecoder(device)


def check_decoder(choice: str, device: str) -> None:
    """Refuse, with the fix, a decoder that a worker whose model runs on ``device`` cannot run."""
    if choice not in DECODERS:
        raise ConfigError(f"VISIONFLEET_DECODE={choice!r} is not one of {', '.join(DECODERS)}")
    if choice != "gpu":
        return
    if not device.startswith("cuda"):
        raise ConfigError(f"VISIONFLEET_DECODE=gpu needs the model on a CUDA GPU, but it runs on {device}; "
                          "set VISIONFLEET_DECODE=fast, or run the torch runtime on a GPU")
    try:
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"VISIONFLEET_DECODE=gpu needs torchvision ({exc}); install it with "
                          "pip install 'visionfleet[gpu]', or set VISIONFLEET_DECODE=fast") from exc


@dataclass
class Deferred:
    """A JPEG whose header was read in a load thread, and whose pixels wait for the batch's one
    GPU call (``finish``). Everything the CPU path needs to take over is kept."""

    decoder: "GpuJpegDecoder"
    data: bytes
    encoded: object  # the bytes as a uint8 tensor, made in the load thread
    box: tuple[float, float, float, float]
    orientation: int
    geometry: Geometry
    max_pixels: int
    pixels: int  # the whole picture's, which the GPU holds decoded


def finish(items: list[Deferred]) -> list[np.ndarray | InputError]:
    """The crops of a batch's deferred JPEGs, in order: a crop, or the InputError of a bad file."""
    return items[0].decoder.finish(items) if items else []


class GpuJpegDecoder:
    """``decode_image`` in two steps: a load thread reads the header (``__call__``), and the batch
    decodes all its JPEGs in one GPU call (``finish``). On an H200 that ran 4.4x one nvJPEG call
    per image from the load threads (2,453 against 559 images/s)."""

    def __init__(self, device: str) -> None:
        import torch

        self._device = torch.device(device)
        self._warned = False

    def __call__(self, data: bytes, geometry: Geometry, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 budget: PixelBudget | None = None) -> np.ndarray | Deferred:
        import torch

        # A file that is not an image fails here with decode_image's own error.
        img = open_header(data) if data else None
        # Its resize is Pillow's bilinear filter only: a model asking for another filter gets the CPU path.
        if img is None or geometry.interpolation != "bilinear" or not _gpu_can_decode(img, data, max_pixels):
            return decode_image(data, geometry, max_pixels=max_pixels, budget=budget)
        orientation = orientation_of(img)
        return Deferred(self, data, torch.frombuffer(bytearray(data), dtype=torch.uint8),
                        crop_box(img.size, geometry, orientation), orientation, geometry, max_pixels,
                        img.size[0] * img.size[1])

    def finish(self, items: list[Deferred]) -> list[np.ndarray | InputError]:
        out: list = []
        for group in _by_pixels(items):
            try:
                out += self._decode(group)
            except Exception:  # one file the batched decoder refuses fails the call: take them one by one
                out += [self._alone(item) for item in group]
        return out

    def _decode(self, items: list[Deferred]) -> list[np.ndarray]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        with torch.inference_mode():
            pictures = decode_jpeg([item.encoded for item in items], mode=ImageReadMode.RGB, device=self._device)
            crops = [crop_tensor(p, i.box, i.orientation, i.geometry.size) for p, i in zip(pictures, items)]
            return list(torch.stack(crops).permute(0, 2, 3, 1).contiguous().cpu().numpy())

    def _alone(self, item: Deferred) -> np.ndarray | InputError:
        try:
            return self._decode([item])[0]
        except Exception as exc:  # the CPU path judges the input, with its precise error
            try:
                crop = decode_image(item.data, item.geometry, max_pixels=item.max_pixels)
            except InputError as error:
                return error
            self._warn_once(exc)
            return crop

    def _warn_once(self, exc: Exception) -> None:
        if not self._warned:  # the CPU decoded it: GPU decode is failing, and such images pay twice
            self._warned = True
            log.warning("GPU JPEG decode failed on an image the CPU decodes; such images take the CPU path",
                        extra={"error": repr(exc)})


def _by_pixels(items: list[Deferred]) -> list[list[Deferred]]:
    """Groups of at most BATCH_PIXELS decoded pixels: a batch of large photos must not take gigabytes."""
    groups: list[list[Deferred]] = [[]]
    pixels = 0
    for item in items:
        if groups[-1] and pixels + item.pixels > BATCH_PIXELS:
            groups.append([])
            pixels = 0
        groups[-1].append(item)
        pixels += item.pixels
    return groups


def _gpu_can_decode(img, data: bytes, max_pixels: int) -> bool:
    width, height = img.size
    return (img.format == "JPEG" and img.mode in ("RGB", "L") and width * height <= min(max_pixels, GPU_MAX_PIXELS)
            and data.endswith(_EOI))


def crop_tensor(pixels, box: tuple[float, float, float, float], orientation: int, size: tuple[int, int]):
    """Resize ``box`` of a decoded CHW uint8 picture to ``size`` (height, width, upright) and turn it
    upright, on the picture's device: a CHW uint8 tensor.

    The resize is Pillow's antialiased bilinear filter over the same sub-pixel box, written
    as one weight matrix per axis, so the crop matches the CPU path's within rounding.
    """
    import torch

    width, height = stored_out_size(size, orientation)
    rows, (y0, y1) = _axis(box[1], box[3], pixels.shape[1], height, pixels.device, False)
    cols, (x0, x1) = _axis(box[0], box[2], pixels.shape[2], width, pixels.device, True)
    out = rows @ pixels[:, y0:y1, x0:x1].float() @ cols
    return _upright(out.round_().clamp_(0, 255).to(torch.uint8), orientation)


@functools.lru_cache(maxsize=1024)
def _axis(start: float, end: float, size: int, out: int, device, transpose: bool):
    """One axis's weights on ``device``, sliced to the source pixels they use, and that slice.
    Cached: photos of one size share their boxes, and building the weights costs more than using them."""
    import torch

    weights = _weights(start, end, size, out)
    used = np.flatnonzero(weights.any(axis=0))
    lo, hi = int(used[0]), int(used[-1]) + 1
    weights = weights[:, lo:hi]
    return torch.as_tensor(weights.T.copy() if transpose else weights, device=device), (lo, hi)


def _weights(start: float, end: float, size: int, out: int) -> np.ndarray:
    """Pillow's resample coefficients (``precompute_coeffs``, bilinear): row i weighs the source
    pixels of output pixel i. The triangle widens with the scale when shrinking (antialiasing)."""
    scale = (end - start) / out
    width = max(scale, 1.0)
    centres = start + (np.arange(out) + 0.5) * scale
    weights = np.clip(1.0 - np.abs((np.arange(size) + 0.5 - centres[:, None]) / width), 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _upright(chw, orientation: int):
    """Pillow's transpose for an EXIF orientation (``decode._UPRIGHT``), on a CHW tensor."""
    import torch

    if orientation >= 5:  # stored sideways: 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90
        return {5: lambda t: t.transpose(1, 2), 6: lambda t: torch.rot90(t, -1, (1, 2)),
                7: lambda t: t.transpose(1, 2).flip(1, 2), 8: lambda t: torch.rot90(t, 1, (1, 2))}[orientation](chw)
    flips = {2: (2,), 3: (1, 2), 4: (1,)}.get(orientation)
    return chw.flip(flips) if flips else chw

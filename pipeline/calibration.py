"""Calibration images for INT8: real inputs, split into a calibration set and a held-out set.

Images alternate between the two sets, so both sample the same stretch of
the source and the gate never measures on an image the ranges came from.
The digest names the crops themselves, so a cached int8 model is tied to
the pixels it was calibrated on, not to URIs whose content may change.
"""
import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.errors import ConfigError, InputError, RetryableError
from visionfleet.pipeline.storage import storage_for

MIN_PER_SET = 4
TRIES_PER_IMAGE = 4  # a source of mostly bad files is not read to its end


@dataclass(frozen=True)
class CalibrationSet:
    calibrate: np.ndarray  # uint8 NHWC crops the activation ranges come from
    held_out: np.ndarray   # uint8 NHWC crops the accuracy gate measures on
    digest: str
    uris: tuple[str, ...] = ()  # where each crop came from: calibrate's, then held_out's, alternating

    def by_uri(self) -> dict[str, np.ndarray]:
        """Each crop by its URI: a job calibrated on its own images need not decode them again to label them."""
        crops = dict(zip(self.uris[0::2], self.calibrate))
        crops.update(zip(self.uris[1::2], self.held_out))
        return crops


def calibration_set(uris: Iterable[str], geometry: Geometry, *, size: int, where: str,
                    max_pixels: int, max_bytes: int, threads: int = 8,
                    budget: PixelBudget | None = None) -> CalibrationSet:
    """Up to ``size`` images per set from the first decodable ``uris``; ``where`` names them in errors.

    Read and decoded ``threads`` at a time (an int8 job waits on this before its first
    image, and from OSS one read at a time is a round trip each), in order, so the sets
    and their digest are what one at a time would give.
    """
    wanted, crops, sources = 2 * size, [], []
    candidates = islice(uris, wanted * TRIES_PER_IMAGE)
    with ThreadPoolExecutor(threads, thread_name_prefix="calibration") as pool:
        while len(crops) < wanted and (chunk := list(islice(candidates, wanted - len(crops)))):
            for uri, crop in zip(chunk, pool.map(lambda uri: _crop(uri, geometry, max_pixels, max_bytes, budget), chunk)):
                if crop is not None:
                    crops.append(crop)
                    sources.append(uri)
    if len(crops) < 2 * MIN_PER_SET:
        raise ConfigError(
            f"INT8 calibration found {len(crops)} decodable images in {where}; it needs at least "
            f"{2 * MIN_PER_SET}: set VISIONFLEET_CALIBRATION to a folder, OSS prefix or manifest of typical images"
        )
    stacked = np.stack(crops)
    digest = hashlib.sha256(stacked.tobytes()).hexdigest()
    return CalibrationSet(stacked[0::2], stacked[1::2], digest, tuple(sources))


def _crop(uri: str, geometry: Geometry, max_pixels: int, max_bytes: int,
          budget: PixelBudget | None) -> np.ndarray | None:
    try:
        return decode_image(storage_for(uri).read(uri, max_bytes=max_bytes), geometry, max_pixels=max_pixels,
                            budget=budget)
    except InputError:
        return None
    except RetryableError:
        if storage_for(uri).answers(uri):  # only this object keeps failing: skipped like an undecodable one
            return None
        raise  # the storage fails for everything: the worker waits it out

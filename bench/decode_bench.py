"""Decode throughput on one core: full decode + resize vs visionfleet.pipeline.decode.decode_image.

    python bench/decode_bench.py [--rounds 7] [--seconds 0.5]

Synthetic 1080p and 12 MP JPEGs (scikit-image's chelsea, upscaled). The two
decoders run interleaved, round after round, so drift in machine load hits
both alike; the medians and their ratio are printed.
"""

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from visionfleet.pipeline.decode import Geometry, decode_image  # noqa: E402

SIZES = {"1080p": (1920, 1080), "12 MP": (4000, 3000)}


def make_jpeg(size: tuple[int, int]) -> bytes:
    import skimage.data

    picture = Image.fromarray(skimage.data.chelsea()).resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    return out.getvalue()


def full_decode(data: bytes, geometry: Geometry):
    """The naive path: decode every pixel, Resize(256) + CenterCrop(224) torchvision-style."""
    img = Image.open(io.BytesIO(data))
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = geometry.resize, int(geometry.resize * h / w)
    else:
        new_w, new_h = int(geometry.resize * w / h), geometry.resize
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = round((new_w - geometry.crop) / 2), round((new_h - geometry.crop) / 2)
    return img.crop((left, top, left + geometry.crop, top + geometry.crop))


def rate(fn, data: bytes, geometry: Geometry, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(data, geometry)
        count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per decoder per round")
    args = parser.parse_args()
    geometry = Geometry()
    for name, size in SIZES.items():
        data = make_jpeg(size)
        rates = {full_decode: [], decode_image: []}
        for _ in range(args.rounds):
            for fn, samples in rates.items():
                samples.append(rate(fn, data, geometry, args.seconds))
        full, ours = (statistics.median(v) for v in rates.values())
        print(f"{name} JPEG ({len(data) // 1024} KiB): full decode+resize {full:6.1f}/s, "
              f"decode_image {ours:6.1f}/s, x{ours / full:.1f}")


if __name__ == "__main__":
    main()

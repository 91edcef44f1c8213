"""The fast JPEG decode (fast_jpeg.decode_fast, the default) against the Pillow path (decode_image): quality and speed.

    python bench/fast_jpeg_bench.py [--photos 1000] [--rounds 7]

Quality, on two sets of distinct JPEGs, each a different quality, subsampling and EXIF orientation: the
built-in model's top-1 on the decode_fast and decode_image crops of each photo, their agreement (beside it,
for scale, the issue's Pillow reference's agreement with decode_image; and both where decode_image's top-1
has a probability of at least 0.3; and today's crops with +-1 grey level of noise, the scale of a change
no eye sees), and their mean absolute difference.
- "framed": every real photo the installed packages carry (scikit-image's, matplotlib's), framed as taken
  (85-100% of each side kept, aspect kept) at a camera size (long side 1024 to 2048): the agreement gate.
- "stress": random 50-100% cuts of the sample photos stretched to 1280x960, 960x1280 or 1600x1200. Most
  show no object, so their top-1 is a near tie that any change of a grey level can turn.
Speed, on 1280x960 JPEGs: the issue's Pillow reference (draft, convert, resize the short side to 256,
centre crop 224), decode_image and decode_fast, in 1 and 2 threads, one after another in each round
(A B C A B C), medians and ratios.
"""
import argparse
import io
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.samples import PHOTOS, bundled  # noqa: E402
from visionfleet.pipeline.decode import Geometry, decode_image  # noqa: E402
from visionfleet.pipeline.fast_jpeg import decode_fast  # noqa: E402

SIZES = ((1280, 960), (960, 1280), (1600, 1200))

# Photographs, not drawings, scans or textures, that the installed packages carry.
FRAMED = (*PHOTOS, "motorcycle_right.png", "retina.jpg", "moon.png", "clock_motion.png")


def _real_photos(names: tuple[str, ...]) -> list[Image.Image]:
    import matplotlib

    paths = [bundled(name) for name in names]
    paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    return [Image.open(path).convert("RGB") for path in paths]


def _jpeg(picture: Image.Image, rng: np.random.Generator, turn: bool) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = int(rng.integers(1, 9)) if turn else 1
    data = io.BytesIO()
    picture.save(data, "JPEG", quality=int(rng.integers(75, 96)), subsampling=int(rng.integers(0, 3)), exif=exif)
    return data.getvalue()


def photos(count: int, seed: int = 0) -> list[bytes]:
    """The stress set: random cuts, stretched to camera sizes."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(bundled(name)).convert("RGB") for name in PHOTOS]
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        picture = src.crop((x, y, x + cw, y + ch)).resize(SIZES[i % 3], Image.Resampling.BICUBIC)
        out.append(_jpeg(picture, rng, i % 4 == 0))
    return out


def framed(count: int, seed: int = 0) -> list[bytes]:
    """The gate set: real photos as taken, at camera sizes."""
    rng = np.random.default_rng(seed)
    sources = _real_photos(FRAMED)
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        keep = rng.uniform(0.85, 1.0)
        cw, ch = int(w * keep), int(h * keep)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        long_side = int(rng.integers(1024, 2049))
        size = (long_side, round(long_side * ch / cw)) if cw >= ch else (round(long_side * cw / ch), long_side)
        picture = src.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BICUBIC)
        out.append(_jpeg(picture, rng, i % 4 == 0))
    return out


def pillow_reference(data: bytes, geometry: Geometry) -> np.ndarray:
    """The issue's plain Pillow decode: draft, convert, short side to 256 (bilinear), centre crop 224."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (256, 256))
    img = img.convert("RGB")
    w, h = img.size
    new_w, new_h = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = round((new_w - 224) / 2), round((new_h - 224) / 2)
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


def quality(name: str, datas: list[bytes], model) -> None:
    """Top-1 agreement with today's decode of the fast path, the Pillow reference and, for the scale of a
    change no eye sees, today's crops with -1, 0 or +1 grey level of noise added to every value."""
    geometry, rng = model.info.geometry, np.random.default_rng(0)
    diffs, largest, top1, best, margin = [], 0, {"today": [], "fast": [], "reference": [], "noise": []}, [], []
    for start in range(0, len(datas), 32):
        chunk = datas[start:start + 32]
        today = np.stack([decode_image(d, geometry) for d in chunk])
        crops = {"today": today, "fast": np.stack([decode_fast(d, geometry) for d in chunk]),
                 "reference": np.stack([pillow_reference(d, geometry) for d in chunk]),
                 "noise": np.clip(today + rng.integers(-1, 2, today.shape), 0, 255).astype(np.uint8)}
        delta = np.abs(crops["today"].astype(np.int16) - crops["fast"].astype(np.int16))
        diffs += list(delta.mean(axis=(1, 2, 3)))
        largest = max(largest, int(delta.max()))
        for path, batch in crops.items():
            probs = model.checked_predict(batch)
            top1[path] += list(probs.argmax(1))
            if path == "today":
                ranked = np.sort(probs, axis=1)
                best += list(ranked[:, -1])
                margin += list(ranked[:, -1] - ranked[:, -2])
    today, best, margin = np.array(top1["today"]), np.array(best), np.array(margin)
    sure = best >= 0.3
    for path in ("fast", "reference", "noise"):
        same = np.array(top1[path]) == today
        print(f"{name}: {path} vs today: top-1 agreement {same.mean():.2%} of {len(datas)} photos, "
              f"{same[sure].mean():.2%} of the {sure.sum()} whose top-1 has p >= 0.3")
    flipped = np.array(top1["fast"]) != today
    if flipped.any():
        print(f"{name}: where fast and today differ, today's top-1 has p <= {best[flipped].max():.3f} and leads "
              f"the second by <= {margin[flipped].max():.3f}")
    print(f"{name}: fast vs today: mean abs difference per crop: mean {np.mean(diffs):.2f}, max {np.max(diffs):.2f} "
          f"grey levels; largest pixel difference {largest}")


def speed(datas: list[bytes], rounds: int) -> None:
    geometry = Geometry()
    decoders = {"pillow reference": pillow_reference, "decode_image (today)": decode_image, "decode_fast": decode_fast}
    for threads in (1, 2):
        rates: dict[str, list[float]] = {name: [] for name in decoders}
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(rounds):
                for name, fn in decoders.items():
                    start = time.perf_counter()
                    list(pool.map(lambda d: fn(d, geometry), datas))
                    rates[name].append(len(datas) / (time.perf_counter() - start))
        medians = {name: statistics.median(v) for name, v in rates.items()}
        reference, today = medians["pillow reference"], medians["decode_image (today)"]
        print(f"{threads} thread(s), 1280x960 JPEGs, images/s (median of {rounds}): " + ", ".join(
            f"{name} {rate:.0f}" for name, rate in medians.items())
            + f"; fast/today x{medians['decode_fast'] / today:.2f}, fast/reference x{medians['decode_fast'] / reference:.2f}"
            + f", today/reference x{today / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    import torch

    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", max_batch_size=32))
    quality("framed", framed(args.photos), model)
    quality("stress", photos(args.photos), model)
    # 100 photos three times: a round of about a second per decoder, long enough to ride out a burst of load
    speed([d for i, d in enumerate(photos(300, seed=1)) if i % 3 == 0] * 3, args.rounds)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

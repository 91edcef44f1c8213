"""The fast JPEG decode (fast_jpeg.decode_fast) against the Pillow path (decode_image): quality and speed.

    python bench/fast_jpeg_bench.py [--photos 1000] [--rounds 7]

Photos: distinct camera-sized JPEGs (1280x960, 960x1280, 1600x1200) cut from the sample photos (bench.samples),
each a different crop, quality, subsampling and EXIF orientation. Quality: top-1 agreement of the built-in
model on the decode_fast and decode_image crops of each photo (beside it, for scale, the Pillow reference's
agreement with decode_image; and both where decode_image's top-1 has a probability of at least 0.3), and
their mean absolute difference. Speed, on 1280x960 JPEGs: the
issue's Pillow reference (draft, convert, resize the short side to 256, centre crop 224), decode_image and
decode_fast, in 1 and 2 threads, one after another in each round (A B C A B C), medians and ratios.
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


def photos(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sources = [Image.open(bundled(name)).convert("RGB") for name in PHOTOS]
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        picture = src.crop((x, y, x + cw, y + ch)).resize(SIZES[i % 3], Image.Resampling.BICUBIC)
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9)) if i % 4 == 0 else 1
        data = io.BytesIO()
        picture.save(data, "JPEG", quality=int(rng.integers(75, 96)), subsampling=int(rng.integers(0, 3)), exif=exif)
        out.append(data.getvalue())
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


def quality(datas: list[bytes]) -> None:
    import torch

    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", max_batch_size=32))
    geometry = model.info.geometry
    diffs, largest, top1, confidence = [], 0, {"today": [], "fast": [], "reference": []}, []
    for start in range(0, len(datas), 32):
        chunk = datas[start:start + 32]
        crops = {"today": np.stack([decode_image(d, geometry) for d in chunk]),
                 "fast": np.stack([decode_fast(d, geometry) for d in chunk]),
                 "reference": np.stack([pillow_reference(d, geometry) for d in chunk])}
        delta = np.abs(crops["today"].astype(np.int16) - crops["fast"].astype(np.int16))
        diffs += list(delta.mean(axis=(1, 2, 3)))
        largest = max(largest, int(delta.max()))
        for name, batch in crops.items():
            probs = model.checked_predict(batch)
            top1[name] += list(probs.argmax(1))
            if name == "today":
                confidence += list(probs.max(1))
    today, sure = np.array(top1["today"]), np.array(confidence) >= 0.3
    for name in ("fast", "reference"):
        same = np.array(top1[name]) == today
        print(f"{name} vs today: top-1 agreement {same.mean():.2%} of {len(datas)} photos, "
              f"{same[sure].mean():.2%} of the {sure.sum()} whose top-1 has p >= 0.3")
    print(f"fast vs today: mean abs difference per crop: mean {np.mean(diffs):.2f}, max {np.max(diffs):.2f} "
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
    datas = photos(args.photos)
    quality(datas)
    # 100 photos three times: a round of about a second per decoder, long enough to ride out a burst of load
    speed([d for i, d in enumerate(photos(300, seed=1)) if i % 3 == 0] * 3, args.rounds)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

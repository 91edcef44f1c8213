"""Real photos (scikit-image's bundled ones) and bad inputs, as bytes."""
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from bench.samples import bundled

# Known answers (ImageNet class ids) of the default model on these photos.
KNOWN = {"chelsea.png": range(281, 286), "coffee.png": (967, 968), "camera.png": (872,)}


def photo_bytes(name: str) -> bytes:
    return bundled(name).read_bytes()


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def distinct_jpegs(count: int, size: int = 96, seed: int = 0) -> list[bytes]:
    """``count`` different small JPEGs cut from real photos."""
    rng = np.random.default_rng(seed)
    sources = [np.asarray(Image.open(bundled(n)).convert("RGB")) for n in ("chelsea.png", "coffee.png", "astronaut.png")]
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        y = rng.integers(0, src.shape[0] - size)
        x = rng.integers(0, src.shape[1] - size)
        out.append(jpeg(src[y:y + size, x:x + size]))
    return out


def mutations(good: bytes, rng: np.random.Generator, count: int) -> Iterator[bytes]:
    """``count`` damaged copies of ``good``: one to seven bytes changed at random, then cut at a random length."""
    for _ in range(count):
        data = bytearray(good)
        for at in rng.integers(0, len(data), rng.integers(1, 8)):
            data[at] = rng.integers(0, 256)
        yield bytes(data[: rng.integers(1, len(data) + 1)])


def bomb_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A tiny PNG that declares a huge image (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")
    return out.getvalue()


def bad_inputs() -> dict[str, tuple[bytes | None, str]]:
    """Name -> (bytes, or None for a missing object; words its error record must contain)."""
    rocket = photo_bytes("rocket.jpg")
    return {
        "empty.jpg": (b"", "empty"),
        "not-an-image.jpg": (b"hello, I am text, not a picture\n" * 20, "not an image"),
        "truncated.jpg": (rocket[: len(rocket) // 2], "truncated"),
        "bomb.png": (bomb_png(), "too large"),
        "missing.jpg": (None, "NoSuchKey"),
    }

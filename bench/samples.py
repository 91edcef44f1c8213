"""Copy real photos bundled with scikit-image into a folder, for demos and benchmarks.

    python -m bench.samples ./photos

Also the giant progressive JPEG that decode memory is tested and measured with.
"""
import io
import shutil
import sys
from pathlib import Path

PHOTOS = ("chelsea.png", "coffee.png", "camera.png", "astronaut.png", "motorcycle_left.png",
          "rocket.jpg", "hubble_deep_field.jpg", "coins.png")


def bundled(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def export(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in PHOTOS:
        shutil.copyfile(bundled(name), folder / name)
        out.append(folder / name)
    return out


def giant_progressive_jpeg(side: int = 9000, seed: int = 0) -> bytes:
    """A side x side progressive JPEG, 4:4:4, of ~1.8 MB at 9000: a smooth gradient with light noise.

    Small to send, big to decode: libjpeg keeps all its DCT coefficients until the last scan,
    2 bytes a sample (~480 MB at 9000 x 9000), however small the scale it is drafted at.
    """
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, side, dtype=np.float32)
    tile = np.random.default_rng(seed).normal(0, 2, (1000, 1000)).astype(np.float32)
    noise = np.tile(tile, (side // 1000 + 1, side // 1000 + 1))[:side, :side]
    pixels = np.empty((side, side, 3), np.uint8)
    pixels[..., 0] = np.clip(ramp[None, :] + noise, 0, 255)
    pixels[..., 1] = np.clip(ramp[:, None] + noise, 0, 255)
    pixels[..., 2] = np.clip(128 + noise, 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", progressive=True, quality=70, subsampling=0)
    return out.getvalue()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "photos")
    print(f"{len(export(target))} photos in {target}")

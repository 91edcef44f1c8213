"""Copy real photos bundled with scikit-image into a folder, for demos and benchmarks.

    python -m bench.samples ./photos
"""
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


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "photos")
    print(f"{len(export(target))} photos in {target}")

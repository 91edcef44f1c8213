"""Local folders (and anything mounted as one: NFS, ossfs, a PVC)."""
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.storage.base import Storage, too_large


class LocalStorage(Storage):
    def read(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        try:
            with open(uri, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise InputError(too_large(uri, size, max_bytes))
                return f.read()
        except FileNotFoundError:
            raise InputError(f"no such file: {uri}") from None
        except IsADirectoryError:
            raise InputError(f"is a directory, not a file: {uri}") from None
        except PermissionError:
            raise InputError(f"permission denied: {uri}") from None

    def write(self, uri: str, data: bytes) -> None:
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file in the same folder, then rename: atomic on POSIX, so a
        # crash mid-write never leaves a half file under the final name.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def list(self, prefix: str) -> Iterator[str]:
        root = Path(prefix)
        if root.is_file():
            yield str(root.resolve())
            return
        # os.walk streams folder by folder; sorting each level keeps the
        # whole walk sorted without holding the full listing.
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.startswith("."):
                    yield str(Path(dirpath, name).resolve())

    def iter_lines(self, uri: str) -> Iterator[str]:
        with open(uri, encoding="utf-8") as f:
            yield from f

    def exists(self, uri: str) -> bool:
        return os.path.exists(uri)

    def delete(self, uri: str) -> None:
        try:
            os.unlink(uri)
        except FileNotFoundError:
            pass

    def join(self, base: str, *parts: str) -> str:
        return str(Path(base, *parts))

"""Local folders (and anything mounted as one: NFS, ossfs, a PVC)."""
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.storage.base import Storage, too_large


class LocalStorage(Storage):
    def read(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        try:
            # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging;
            # anything but a regular file is refused before a byte is read.
            fd = os.open(uri, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise InputError(f"no such file: {uri}") from None
        except PermissionError:
            raise InputError(f"permission denied: {uri}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise InputError(f"is a directory, not a file: {uri}")
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"not a regular file (a FIFO, device or socket): {uri}")
            if max_bytes is not None and info.st_size > max_bytes:
                raise InputError(too_large(uri, info.st_size, max_bytes))
            with open(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def write(self, uri: str, data: bytes) -> None:
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file in the same folder, then rename: atomic on POSIX, so a
        # crash mid-write never leaves a half file under the final name.
        # Created with mode 0666 so the umask decides, as for any file the
        # user writes (mkstemp would force 0600 on everyone's labels).
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            os.unlink(tmp)
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(path)  # a full disk fails the write or fsync, which name no file
            raise

    def list(self, prefix: str) -> Iterator[str]:
        root = Path(prefix)
        if root.is_file():
            yield os.path.abspath(root)
            return
        # os.walk streams folder by folder; sorting each level keeps the
        # whole walk sorted without holding the full listing.
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.startswith("."):
                    # Absolute, but as listed: a symlink's record names the link, not its target.
                    yield os.path.abspath(os.path.join(dirpath, name))

    def open_stream(self, uri: str) -> BinaryIO:
        return open(uri, "rb")

    def exists(self, uri: str) -> bool:
        return os.path.exists(uri)

    def delete(self, uri: str) -> None:
        try:
            os.unlink(uri)
        except FileNotFoundError:
            pass

    def join(self, base: str, *parts: str) -> str:
        return str(Path(base, *parts))

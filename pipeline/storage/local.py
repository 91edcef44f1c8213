"""Local folders (and anything mounted as one: NFS, ossfs, a PVC)."""
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.storage.base import Entry, Storage, too_large


def absolute(path: str) -> str:
    """``path`` from the root, naming the file the kernel would open from here.

    Only ``.`` and repeated slashes go: ``os.path.abspath`` also drops ``link/..`` as text, while the
    kernel follows ``link`` first, so the path it gave could name another file than the one meant."""
    joined = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    return "/" + "/".join(part for part in joined.split("/") if part not in ("", "."))


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except PermissionError:
        raise InputError(f"permission denied: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:  # checked as a file, a link when opened
            raise InputError(f"{path} was replaced by a link while it was being opened; not read") from None
        raise


def _opened_path(fd: int) -> str | None:
    """The path the kernel opened for ``fd`` (None where /proc is not mounted)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def fingerprint(info: os.stat_result) -> str:
    """``SIZE-MTIME_NS``: new bytes written into a file change its size or its modification time."""
    return f"{info.st_size}-{info.st_mtime_ns}"


def _entry(path: str) -> Entry:
    """``path`` with the fingerprint of what it names (a link: its target's); None if that cannot be
    looked at (a dangling link): its read then says why."""
    try:
        return path, fingerprint(os.stat(path))
    except OSError:
        return path, None


class LocalStorage(Storage):
    def read(self, uri: str, *, max_bytes: int | None = None, nofollow: bool = False) -> bytes:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging;
        # anything but a regular file is refused before a byte is read.
        fd = _open(uri, os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if nofollow else 0))
        try:
            if nofollow and _opened_path(fd) not in (uri, None):
                raise InputError(f"{uri} was replaced while it was being opened (a folder on its path became a "
                                 "link); not read")
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

    def entries(self, prefix: str) -> Iterator[Entry]:
        root = Path(prefix)
        if root.is_file():
            yield _entry(absolute(prefix))
            return
        # os.walk streams folder by folder; sorting each level keeps the
        # whole walk sorted without holding the full listing.
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.startswith("."):
                    # Absolute, but as listed: a symlink's record names the link, not its target.
                    yield _entry(absolute(os.path.join(dirpath, name)))

    def open_stream(self, uri: str) -> BinaryIO:
        return open(uri, "rb")

    def exists(self, uri: str) -> bool:
        return os.path.exists(uri)

    def delete(self, uri: str) -> None:
        try:
            os.unlink(uri)
        except FileNotFoundError:
            pass

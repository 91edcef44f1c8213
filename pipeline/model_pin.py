"""One model version per job: a model package pinned by its content digest.

Planning reads the package once, from its folder or from OSS, into a local copy, validates that copy,
and writes it into the job's own folder (``DEST/<job_id>/_plan/model/``, which every worker of the job
reads), its digest in the job (``pin``). A worker copies the job's pinned files into its local package
cache once, under the digest, and checks their bytes against it whenever it loads the model
(``PackageCache``). So a package replaced under its URI mid-job changes nothing for the running job, and
a pinned copy whose bytes no longer match (damaged, tampered) is refused with the reason. A local
package is pinned alike: a file edited mid-job is no different from an object replaced.

The digest is the package's content digest (``model_package.content_digest``: sha256 over its files'
names and bytes).
"""
import json
import logging
import os
import posixpath
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from visionfleet.pipeline import layout
from visionfleet.pipeline.envvars import visionfleet_home
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.model_package import check_package, content_digest
from visionfleet.pipeline.model_spec import MODEL_JSON, is_package
from visionfleet.pipeline.storage import is_oss, storage_for

log = logging.getLogger(__name__)


def fetch(model_uri: str, folder: Path) -> list[Path]:
    """The files of the package whose model file is ``model_uri`` (a path or an ``oss://`` URI), copied
    into ``folder``, in the package's order (``ModelPackage.files``); InputError naming one that cannot be
    read. Only ``labels_file`` is looked up in ``model.json``, to copy that file too: whether the package
    is right is for ``check_package`` to say, on the copy."""
    base, model_file = posixpath.split(model_uri)
    storage = storage_for(model_uri)
    described = storage.read(f"{base}/{MODEL_JSON}")
    files = []
    for name in (model_file, MODEL_JSON, *_labels_file(described)):
        files.append(folder / name)
        files[-1].write_bytes(described if name == MODEL_JSON else storage.read(f"{base}/{name}"))
    return files


def _labels_file(described: bytes) -> list[str]:
    """The labels file ``model.json`` names, if it names one that can be beside it."""
    try:
        name = json.loads(described).get("labels_file")
    except (ValueError, AttributeError):
        return []  # check_package names what is wrong
    return [name] if isinstance(name, str) and name not in ("", ".", "..") and "/" not in name else []


def digest_of(spec: str) -> str | None:
    """The content digest of the package ``spec`` names as it is now (None for a model that is no package):
    what an incremental run compares with its base's before anything is written."""
    if not is_package(spec):
        return None
    with tempfile.TemporaryDirectory(prefix="visionfleet-package-") as tmp:
        return content_digest(_fetched(spec, Path(tmp)))


def _fetched(spec: str, folder: Path) -> list[Path]:
    try:
        return fetch(spec, folder)
    except InputError as exc:
        raise ConfigError(f"model package {spec} cannot be read: {exc}; a package is the model file's "
                          f"path or oss:// URI, with its {MODEL_JSON} beside it") from None


def pin(spec: str, root: str, *, embeddings: bool = False, expected: str | None = None) -> str | None:
    """Planning: the package ``spec`` names read once, checked (``check_package``; with ``embeddings``, that
    it names its embedding) and copied under the job's folder ``root``; its digest (None for a model that
    is no package). Nothing is written unless it passes. ``expected``: the digest it was judged by earlier
    (``digest_of``), which it must still have."""
    if not is_package(spec):
        return None
    with tempfile.TemporaryDirectory(prefix="visionfleet-package-") as tmp:
        _fetched(spec, Path(tmp))
        try:
            package = check_package(Path(tmp, posixpath.basename(spec)))
            if embeddings:
                package.check_embeddings()
        except ConfigError as exc:  # named as the user knows the package, not as its copy
            raise ConfigError(str(exc).replace(tmp, posixpath.dirname(spec))) from None
        files, digest = package.files(), package.content_digest()
        if expected is not None and digest != expected:
            raise ConfigError(f"model package {spec} changed while the job was being planned (sha256 {digest}, "
                              f"first read as {expected}); start the job again once it is in place")
        storage = storage_for(root)
        for path in files:
            storage.write(layout.pinned_model(root, path.name), path.read_bytes())
    log.info("model package pinned", extra={"model": spec, "digest": digest, "files": [p.name for p in files]})
    return digest


def cache_root(model_cache: str) -> Path:
    """Where a worker keeps its copies of pinned packages: beside its model artifacts, or under
    VISIONFLEET_HOME when those are on OSS (a model runs from a local file)."""
    return (visionfleet_home() / "models" if is_oss(model_cache) else Path(model_cache)) / "packages"


class PackageCache:
    """A worker's local copies of pinned packages, one folder per digest, checked on every load."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local(self, pinned: str, digest: str) -> str:
        """The local model file of the package pinned at ``pinned`` (its model file in the job's folder)
        with ``digest``: the cached copy while its bytes match, else fetched from the pinned copy and
        checked. ConfigError if the pinned copy cannot be read or does not match: every worker would
        find the same."""
        folder = self.root / digest
        model_file = posixpath.basename(pinned)
        if folder.is_dir():
            if _matches(folder, model_file, digest):
                log.info("model package found in the cache", extra={"digest": digest, "folder": str(folder)})
                return str(folder / model_file)
            log.warning("cached model package failed its digest check: fetching it again",
                        extra={"digest": digest, "folder": str(folder)})
            shutil.rmtree(folder, ignore_errors=True)
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{digest}.{secrets.token_hex(4)}.tmp"
        try:
            self._fetch(pinned, tmp, digest)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not folder.is_dir():
                    raise  # else another process of this worker fetched it first: the same bytes
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("model package fetched", extra={"digest": digest, "from": pinned, "folder": str(folder),
                                                 "seconds": round(time.monotonic() - started, 3)})
        return str(folder / model_file)

    def current(self, spec: str) -> str:
        """The local model file of the OSS package ``spec`` as it is now: fetched, checked (``check_package``)
        and kept under its digest. For a model no job pinned (one an online request names, a worker's own
        VISIONFLEET_MODEL): the version found when it loads serves until the worker unloads it."""
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch.", dir=self.root))
        try:
            try:
                files = fetch(spec, tmp)
            except InputError as exc:
                raise ConfigError(f"model package {spec} cannot be read: {exc}; a package is the model file's "
                                  f"oss:// URI, with its {MODEL_JSON} beside it") from None
            try:
                check_package(files[0])
            except ConfigError as exc:  # named as the user knows the package, not as its copy
                raise ConfigError(str(exc).replace(str(tmp), posixpath.dirname(spec))) from None
            folder = self.root / content_digest(files)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not folder.is_dir():
                    raise  # else this version was fetched before: the same bytes
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("model package fetched", extra={"from": spec, "folder": str(folder),
                                                 "seconds": round(time.monotonic() - started, 3)})
        return str(folder / files[0].name)

    @staticmethod
    def _fetch(pinned: str, tmp: Path, digest: str) -> None:
        where = posixpath.dirname(pinned)
        tmp.mkdir()
        try:
            found = content_digest(fetch(pinned, tmp))
        except InputError as exc:
            raise ConfigError(f"the model package pinned for this job at {where} cannot be read ({exc}); "
                              "start the job again to pin the package anew") from None
        if found != digest:
            raise ConfigError(f"the model package pinned for this job at {where} fails its digest check "
                              f"(sha256 {found}, the job was planned with {digest}): it was changed "
                              "after planning, and a job runs only the package it was planned with; start "
                              "the job again to run the package as it is now")


def _matches(folder: Path, model_file: str, digest: str) -> bool:
    """Whether a cached copy still has ``digest``: its files in the package's order (the model file,
    ``model.json``, then its labels file, and anything else found there, which then fails the check)."""
    first = [model_file, MODEL_JSON]
    rest = sorted(p.name for p in folder.iterdir() if p.name not in first)
    try:
        return content_digest([folder / name for name in (*first, *rest)]) == digest
    except FileNotFoundError:
        return False

"""One model version per job: a model package pinned by its content digest.

Planning reads the package once, from its folder or from OSS, into a local copy, validates that copy,
and writes it into the job's own folder (``DEST/<job_id>/_plan/model/``, which every worker of the job
reads), its digest in the job (``pin``). A worker copies the job's pinned files into its local package
cache once, under the digest, and checks their bytes against it whenever it loads the model
(``PackageCache``). So a package replaced under its URI mid-job changes nothing for the running job, and
a pinned copy whose bytes no longer match (damaged, tampered) is refused with the reason. A local
package is pinned alike: a file edited mid-job is no different from an object replaced.

The digest is the sha256 over each file's name and the sha256 of its bytes, in name order.
"""
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from visionfleet.pipeline import layout
from visionfleet.pipeline.envvars import visionfleet_home
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.model_spec import is_package
from visionfleet.pipeline.storage import is_oss, storage_for

log = logging.getLogger(__name__)

MODEL_JSON = "model.json"


@dataclass(frozen=True)
class Fetched:
    """A package's files copied into a local ``folder``: ``model_file`` and the rest, by ``names``."""

    folder: Path
    model_file: str
    names: tuple[str, ...]
    digest: str

    @property
    def model_path(self) -> str:
        return str(self.folder / self.model_file)


def package_files(model_file: str, model_json: bytes) -> list[str]:
    """The names of a package's files beside its model file: the model file, ``model.json`` and the
    ``labels_file`` that names, if any."""
    try:
        meta = json.loads(model_json)
    except ValueError as exc:
        raise ConfigError(f"{MODEL_JSON} is not JSON ({exc}); fix the file") from None
    labels = meta.get("labels_file") if isinstance(meta, dict) else None
    if labels is None:
        return [model_file, MODEL_JSON]
    if not isinstance(labels, str) or labels.startswith("/") or ".." in labels.split("/"):
        raise ConfigError(f"{MODEL_JSON}: labels_file {labels!r} must be a path beside it; give a file name "
                          "in the package's folder")
    return [model_file, MODEL_JSON, labels]


def digest_of(folder: Path, names) -> str:
    lines = []
    for name in sorted(names):
        with open(folder / name, "rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fetch(model_uri: str, folder: Path) -> Fetched:
    """The package whose model file is ``model_uri`` (a path or an ``oss://`` URI), copied into
    ``folder``; InputError naming the file that cannot be read."""
    base, model_file = posixpath.split(model_uri)
    storage = storage_for(model_uri)
    meta = storage.read(f"{base}/{MODEL_JSON}")
    names = package_files(model_file, meta)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(meta if name == MODEL_JSON else storage.read(f"{base}/{name}"))
    return Fetched(folder, model_file, tuple(names), digest_of(folder, names))


def pin(spec: str, root: str) -> str | None:
    """Planning: the package ``spec`` names read once, checked, and copied under the job's folder
    ``root``; its digest (None for a model that is no package). Nothing is written unless it passes."""
    if not is_package(spec):
        return None
    with tempfile.TemporaryDirectory(prefix="visionfleet-package-") as tmp:
        try:
            fetched = fetch(spec, Path(tmp))
        except InputError as exc:
            raise ConfigError(f"model package {spec} cannot be read: {exc}; a package is the model file's "
                              f"path or oss:// URI, with {MODEL_JSON} beside it") from None
        storage = storage_for(root)
        for name in fetched.names:
            storage.write(layout.pinned_model(root, name), (fetched.folder / name).read_bytes())
    log.info("model package pinned", extra={"model": spec, "digest": fetched.digest, "files": list(fetched.names)})
    return fetched.digest


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
            if digest_of(folder, _files_in(folder)) == digest:
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

    @staticmethod
    def _fetch(pinned: str, tmp: Path, digest: str) -> None:
        where = posixpath.dirname(pinned)
        try:
            fetched = fetch(pinned, tmp)
        except InputError as exc:
            raise ConfigError(f"the model package pinned for this job at {where} cannot be read ({exc}); "
                              "start the job again to pin the package anew") from None
        if fetched.digest != digest:
            raise ConfigError(f"the model package pinned for this job at {where} fails its digest check "
                              f"(sha256 {fetched.digest}, the job was planned with {digest}): it was changed "
                              "after planning, and a job runs only the package it was planned with; start "
                              "the job again to run the package as it is now")


def _files_in(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]

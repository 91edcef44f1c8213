"""The model artifact cache: build-once files (ONNX exports, int8 models) shared by a fleet.

An artifact is named by a digest of everything that makes it valid (weights,
export settings, library versions, precision, calibration images), so a
changed input is a different name and never a stale hit. The root is a
local folder or an ``oss://`` prefix. Each artifact is written before its
manifest, both atomically, and the manifest's checksum is verified on every
load: two workers building the same artifact at once both write a whole,
identical file (time wasted, nothing corrupted), and a damaged file is
rebuilt rather than run.
"""
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable

from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.location import Location

log = logging.getLogger(__name__)

Build = Callable[[], tuple[bytes, dict]]  # the artifact's bytes, and facts to keep in its manifest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactCache:
    def __init__(self, root: str) -> None:
        self.root = Location.parse(root)
        self._storage = self.root.storage

    def get_or_build(self, name: str, fields: dict, build: Build) -> tuple[bytes, dict]:
        """The artifact ``name`` for ``fields`` and its manifest: fetched and verified, else built and stored."""
        key = sha256(json.dumps(fields, sort_keys=True).encode())[:24]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", name)  # a model package's own name is any text
        base = str(self.root.child(f"{name}-{key}"))
        started = time.monotonic()
        found = self._load(base)
        if found is not None:
            log.info("model artifact fetched", extra={"artifact": base, "seconds": _since(started)})
            return found
        data, facts = build()
        manifest = {**facts, "sha256": sha256(data), "bytes": len(data), "fields": fields,
                    "build_s": _since(started)}
        self._storage.write(base + ".onnx", data)
        self._storage.write(base + ".json", json.dumps(manifest, indent=1).encode())
        log.info("model artifact built", extra={"artifact": base, "seconds": manifest["build_s"]})
        return data, manifest

    def _load(self, base: str) -> tuple[bytes, dict] | None:
        try:
            manifest = json.loads(self._storage.read(base + ".json"))
            data = self._storage.read(base + ".onnx")
        except (InputError, ValueError):
            return None  # not built yet (or a manifest that is not ours): build it
        if sha256(data) != manifest.get("sha256"):
            log.warning("model artifact failed verification: rebuilding", extra={"artifact": base})
            return None
        return data, manifest


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)

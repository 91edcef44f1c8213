"""What a worker may touch: the models it loads, the local folders and OSS buckets it reads and writes.

A message names a model and URIs; a worker acts on them only inside what its
own settings allow, so whoever can write to the broker cannot make it import
any module or open any file:

- ``VISIONFLEET_MODELS``: the model specs it loads (comma-separated; default:
  the built-in model and ``VISIONFLEET_MODEL``); an entry ending in ``/`` allows
  every model package under that prefix (``oss://bucket/models/``, ``/srv/models/``);
- ``VISIONFLEET_LOCAL_ROOTS``: the local folders it reads and writes
  (``os.pathsep``-separated; default: none);
- ``VISIONFLEET_OSS_BUCKETS``: the buckets it reads and writes
  (comma-separated; default: any).

The embedded default runs only the job its own command planned (its own queue
folder): unset, the allowances are what that job names, its model and its
source, output and calibration folders (``for_job``).
"""
import functools
import os
from dataclasses import dataclass, replace

from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.job import JobSpec
from visionfleet.pipeline.job import DEFAULT_MODEL
from visionfleet.pipeline.model_spec import is_package
from visionfleet.pipeline.storage import is_oss
from visionfleet.pipeline.storage.local import absolute

MAX_URI_BYTES = 4096  # longer is no URI anyone meant: an error record (a manifest line: planning fails)


@dataclass(frozen=True)
class Access:
    models: frozenset[str]
    local_roots: tuple[str, ...]  # real paths; none: no local path at all
    oss_buckets: frozenset[str] | None  # None: any bucket
    # Whether the settings left the models, the local roots unset: one job's own fill them (``for_job``).
    open_models: bool = False
    open_roots: bool = False

    @classmethod
    def from_env(cls) -> "Access":
        """The worker's allowances, read once at its edge."""
        models = _listed("VISIONFLEET_MODELS", ",")
        roots = _listed("VISIONFLEET_LOCAL_ROOTS", os.pathsep)
        buckets = _listed("VISIONFLEET_OSS_BUCKETS", ",")
        return cls(frozenset((models or set()) | {DEFAULT_MODEL, env_str("VISIONFLEET_MODEL", DEFAULT_MODEL)}),
                   _real_roots(roots or ()), None if buckets is None else frozenset(buckets),
                   open_models=not models, open_roots=not roots)

    def for_job(self, job: JobSpec) -> "Access":
        """These allowances for the one job an embedded command runs: what they leave unset is what it names,
        its model and its source, output and calibration folders."""
        models = self.models | {job.model} if self.open_models else self.models
        roots = self.local_roots
        if self.open_roots:
            roots = _real_roots({_folder(place) for place in (job.source, job.output, job.calibration) if place})
        return replace(self, models=models, local_roots=roots)

    def check_model(self, spec: str) -> None:
        """Before anything is imported or opened for ``spec``. A package on OSS is read from its bucket
        (by the planner, which pins it for the workers): the bucket allow-list applies to it too."""
        if spec not in self.models and not any(_under_prefix(spec, entry) for entry in self.models):
            above = " (or a folder above it, ending in /)" if is_package(spec) else ""
            raise ConfigError(f"model {spec} is not allowed on this worker; add it to VISIONFLEET_MODELS{above}")
        if is_oss(spec):
            self.check_place(spec)

    def check_place(self, uri: str) -> None:
        """A job's source, output or calibration: refused as a whole (ConfigError) when outside."""
        try:
            self.check_uri(uri)
        except InputError as exc:
            raise ConfigError(str(exc)) from None

    def check_uri(self, uri: str) -> str:
        """One input or output: an InputError (its error record) when it is outside what is allowed.

        Returns what to open: the URI itself on OSS; for a local path, the file as the kernel resolves it
        (every link, then ``..``), to be opened with ``nofollow`` so that the check and the open see the
        same file."""
        size = len(uri.encode("utf-8", "surrogatepass"))
        if size > MAX_URI_BYTES:
            raise InputError(f"URI of {size} bytes, over the bound of {MAX_URI_BYTES}")
        if is_oss(uri):
            bucket = uri[len("oss://"):].split("/", 1)[0]
            if self.oss_buckets is not None and bucket not in self.oss_buckets:
                raise InputError(f"bucket {bucket} is not allowed on this worker; add it to VISIONFLEET_OSS_BUCKETS")
            return uri
        real = _real_path(uri)
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.local_roots):
            raise InputError(f"{uri} is outside the folders workers may use; add its folder to "
                             "VISIONFLEET_LOCAL_ROOTS")
        return real


def _under_prefix(spec: str, entry: str) -> bool:
    """Whether ``entry``, a prefix (ending in ``/``), holds the package ``spec``. Compared as text, so the
    planner and every worker judge alike (a worker need not have the file): a spec with a ``.`` or ``..``
    step after the prefix is never under it (``/models/../etc/x.onnx``). A local prefix is taken from
    the root (``./models/`` from where the worker started)."""
    if not entry.endswith("/"):
        return False
    prefix = entry if is_oss(entry) else absolute(entry).rstrip("/") + "/"
    rest = spec.removeprefix(prefix)
    return rest != spec and bool(rest) and not any(step in (".", "..") for step in rest.split("/"))


def _real_path(path: str) -> str:
    """``os.path.realpath``, with the folder's resolution cached: a shard's thousand files share a few
    folders, and resolving every component of every path cost a fifth of a null model's time per image.

    Nothing is normalised as text first: in ``/r/link/../f`` the kernel follows ``link`` before ``..``
    (``os.path.abspath`` would drop ``link/..`` and check a file that is not the one opened)."""
    folder, name = os.path.split(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))
    if name in ("", ".", ".."):
        return os.path.realpath(path)
    real = os.path.join(_real_folder(folder), name)
    return os.path.realpath(real) if os.path.islink(real) else real


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _real_roots(roots) -> tuple[str, ...]:
    return tuple(sorted(os.path.realpath(r) for r in roots if not is_oss(r)))


def _listed(name: str, sep: str) -> set[str] | None:
    raw = env_str(name)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(sep) if item.strip()}


def _folder(place: str) -> str:
    """The folder a local source, output or calibration stands for (a manifest: its folder)."""
    return place if is_oss(place) or not os.path.isfile(place) else os.path.dirname(absolute(place))

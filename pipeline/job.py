"""A relabel job: what was asked (``JobSpec``) and the job planned from it (``Job``).

The planner builds the ``Job`` once and stores it twice, in the state store
and as ``DEST/<job_id>/_plan/job.json``; a shard's message names only the job
id and the shard, and each reader rebuilds the same ``Job`` from what is
stored. The stored form stays the flat dict it has always been (the spec's
fields, ``job_id``, ``output`` as the job's own folder, ``created_at``,
``shard_lists``), now with ``"schema"``. Reading is forward compatible:

- a field this code does not know (written by a newer planner) is ignored,
  with one warning naming it;
- a field added after the first release and missing (a job planned before
  it) takes its default, which is what that job ran with;
- a field every job has ever stored, missing or of the wrong type, means the
  record is broken: ``ConfigError``, which fails the job with the reason.
"""
import functools
import logging
import types
import typing
from dataclasses import asdict, dataclass, fields

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.sink import DEFAULT_FORMAT, OutputSink, sink_for

log = logging.getLogger(__name__)

# The model a job runs when it names none. Here, not with the model code: the command that plans a job
# needs the name but none of that code (numpy, Pillow and the runtimes: a tenth of a second of every relabel).
DEFAULT_MODEL = "efficientnet_lite0"

SCHEMA = 1  # of the stored form; a job stored before it has none
DEFAULT_SHARD_SIZE = 1000  # 50M images -> 50k messages
# In every job ever stored (the first release wrote these): one missing is a broken record, not an old one.
REQUIRED = ("job_id", "output", "source", "model", "top_k", "shard_size", "all_files", "created_at")


@dataclass(frozen=True)
class JobSpec:
    source: str
    output: str
    model: str = DEFAULT_MODEL
    top_k: int = 5
    shard_size: int = DEFAULT_SHARD_SIZE
    all_files: bool = False
    cache: bool = False  # look labels up by content first (dedup cache; needs Redis)
    runtime: str = "auto"  # auto: each worker picks the fastest it has
    precision: str = "auto"
    calibration: str | None = None  # int8 calibration images; None: the job's own
    allow_empty: bool = False  # else a source that matches nothing is a mistake (a typo in a prefix)
    include: tuple[str, ...] = ()  # globs on the key: keep only matching URIs
    exclude: tuple[str, ...] = ()  # globs on the key: drop matching URIs
    output_format: str = DEFAULT_FORMAT  # how parts are written: a name in pipeline.sink.FORMATS
    # The share of error records over which the job ends failed (all kept); under 1, a job whose first
    # records are all errors of one kind also stops early (checkpoints.verdict). 1, what a job stored
    # before the rule ran with: any share, no early stop. `relabel` gives 0.5 unless told.
    max_error_rate: float = 1.0
    embeddings: bool = False  # each ok record also carries the model's embedding of the image
    # A model package's content digest, fixed when the job is planned: every record comes from those bytes.
    model_digest: str | None = None
    # A finished job's folder (DEST/<job_id>): inputs it labelled ok with this model, unchanged since, are skipped.
    incremental_from: str | None = None


@dataclass(frozen=True)
class Job:
    """``spec`` as planned, its ``output`` made the job's own folder ``DEST/<job_id>`` (as the stored
    form has always said); ``shard_lists``: the format of its shard lists, None for the bare-lines
    lists of jobs planned before JSON Lines."""

    job_id: str
    spec: JobSpec
    created_at: float
    shard_lists: str | None = None

    @property
    def root(self) -> str:
        """Where the job writes: ``DEST/<job_id>``."""
        return self.spec.output

    def sink(self, embedding_dim: int | None = None) -> OutputSink:
        """What writes the job's output: its parts, durable copies and summary. ``embedding_dim``: the
        length of the model's embeddings, when the job asked for them (a worker knows it)."""
        return sink_for(self.root, self.spec.output_format, embedding_dim if self.spec.embeddings else None)

    def to_dict(self) -> dict:
        return {**asdict(self.spec), "job_id": self.job_id, "created_at": self.created_at,
                "shard_lists": self.shard_lists, "schema": SCHEMA}

    @classmethod
    def from_dict(cls, stored: dict) -> "Job":
        """The job ``stored`` describes (``to_dict``'s form, or an older one); ConfigError if it is broken."""
        job_id = stored.get("job_id", "?")
        missing = [name for name in REQUIRED if name not in stored]
        if missing:
            raise ConfigError(f"job {job_id} cannot be read: its stored description lacks {', '.join(missing)} "
                              f"(schema {stored.get('schema', 'none')}); start the job again")
        values = {name: _checked(job_id, name, stored[name], hint) for name, hint in _HINTS.items() if name in stored}
        unknown = tuple(sorted(stored.keys() - _HINTS.keys()))
        if unknown:
            _warn_unknown(values["job_id"], unknown, values.get("schema"))
        spec = JobSpec(**{f.name: values[f.name] for f in fields(JobSpec) if f.name in values})
        return cls(values["job_id"], spec, values["created_at"], values.get("shard_lists"))


# Every field of the stored form, with the type its JSON value must stand for.
_HINTS = {**typing.get_type_hints(JobSpec), "job_id": str, "created_at": float, "shard_lists": str | None,
          "schema": int}


def _checked(job_id, name: str, value, hint):
    if not _fits(value, hint):
        expected = hint.__name__ if isinstance(hint, type) else str(hint)
        raise ConfigError(f"job {job_id} cannot be read: its stored {name} is {value!r} ({expected} expected); "
                          "start the job again")
    return tuple(value) if typing.get_origin(hint) is tuple else value


def _fits(value, hint) -> bool:
    """Whether a JSON value stands for ``hint`` (a bool is no number; a list is a tuple)."""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    if isinstance(value, bool) and hint is not bool:
        return False
    return isinstance(value, (int, float) if hint is float else hint)


@functools.lru_cache(maxsize=1024)
def _warn_unknown(job_id: str, names: tuple[str, ...], schema: int | None) -> None:
    """Once per job and process: every shard reads the job again."""
    log.warning("stored job has fields this version does not know: ignored", extra={
        "job_id": job_id, "fields": list(names), "schema": schema})

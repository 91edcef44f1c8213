"""Output sinks, chosen by format name in this one place: JSON Lines, the default, and Parquet.
A new format is one ``OutputSink`` subclass and one entry here."""
import importlib

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.sink.base import OutputSink

__all__ = ["DEFAULT_FORMAT", "FORMATS", "OutputSink", "sink_for", "sink_for_part"]

DEFAULT_FORMAT = "jsonl"
# Format -> its sink class, imported when first used: pyarrow (and numpy with it) would cost every command
# that plans a job a tenth of a second, whatever its format.
FORMATS = {"jsonl": "visionfleet.pipeline.sink.jsonl:JsonlSink",
           "parquet": "visionfleet.pipeline.sink.parquet:ParquetSink"}


def sink_class(output_format: str) -> type[OutputSink]:
    module, _, name = FORMATS[output_format].partition(":")
    return getattr(importlib.import_module(module), name)


def sink_for(root: str | Location, output_format: str = DEFAULT_FORMAT,
             embedding_dim: int | None = None) -> OutputSink:
    """The sink that writes a job's output under ``root`` (``DEST/<job_id>``) in ``output_format``;
    ``embedding_dim``: the model's, in a job that asked for embeddings."""
    if output_format not in FORMATS:
        raise ConfigError(f"no output format {output_format!r}; choose one of: {', '.join(FORMATS)}")
    return sink_class(output_format)(root, embedding_dim)


def sink_for_part(root: str | Location, name: str) -> OutputSink:
    """The sink that reads part ``name`` of the job under ``root``: the format its extension names."""
    sinks = [sink_class(output_format) for output_format in FORMATS]
    for sink in sinks:
        if name.endswith(sink.extension):
            return sink(root)
    raise ConfigError(f"{name} is not a part this version reads (parts end in "
                      f"{', '.join(s.extension for s in sinks)}); was it written by a newer one?")

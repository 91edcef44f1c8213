"""Output sinks, chosen by format name in this one place: JSON Lines, the default, and Parquet.
A new format is one ``OutputSink`` subclass and one entry here."""
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.sink.base import OutputSink
from visionfleet.pipeline.sink.jsonl import JsonlSink
from visionfleet.pipeline.sink.parquet import ParquetSink

__all__ = ["DEFAULT_FORMAT", "FORMATS", "OutputSink", "sink_for", "sink_for_part"]

DEFAULT_FORMAT = "jsonl"
FORMATS: dict[str, type[OutputSink]] = {"jsonl": JsonlSink, "parquet": ParquetSink}


def sink_for(root: str | Location, output_format: str = DEFAULT_FORMAT,
             embedding_dim: int | None = None) -> OutputSink:
    """The sink that writes a job's output under ``root`` (``DEST/<job_id>``) in ``output_format``;
    ``embedding_dim``: the model's, in a job that asked for embeddings."""
    if output_format not in FORMATS:
        raise ConfigError(f"no output format {output_format!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[output_format](root, embedding_dim)


def sink_for_part(root: str | Location, name: str) -> OutputSink:
    """The sink that reads part ``name`` of the job under ``root``: the format its extension names."""
    for sink in FORMATS.values():
        if name.endswith(sink.extension):
            return sink(root)
    raise ConfigError(f"{name} is not a part this version reads (parts end in "
                      f"{', '.join(s.extension for s in FORMATS.values())}); was it written by a newer one?")

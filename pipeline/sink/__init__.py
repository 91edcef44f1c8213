"""Output sinks, chosen by format name in this one place: JSON Lines, the default
(and today's only one). A new format is one ``OutputSink`` subclass and one entry here."""
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.sink.base import OutputSink
from visionfleet.pipeline.sink.jsonl import JsonlSink

__all__ = ["DEFAULT_FORMAT", "FORMATS", "OutputSink", "sink_for"]

DEFAULT_FORMAT = "jsonl"
FORMATS: dict[str, type[OutputSink]] = {"jsonl": JsonlSink}


def sink_for(root: str | Location, output_format: str = DEFAULT_FORMAT) -> OutputSink:
    """The sink that writes a job's output under ``root`` (``DEST/<job_id>``) in ``output_format``."""
    if output_format not in FORMATS:
        raise ConfigError(f"no output format {output_format!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[output_format](root)

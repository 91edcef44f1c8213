"""A model plug-in that leaves a mark when it is imported: proof that a worker refusing it imported nothing."""
import os
from pathlib import Path

Path(os.environ["VISIONFLEET_TEST_TRIPWIRE"]).write_text(f"imported by pid {os.getpid()}")


def build(settings):
    raise RuntimeError("never built: the tripwire is the point")

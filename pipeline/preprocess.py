"""Which decode a process makes its crops with (VISIONFLEET_DECODE), and the version its records name.

Why a version: a record's labels are only as good as the pixels they came from, so every record says
which pixels (its ``preprocess``), and an incremental run skips an input only when its earlier record was
made the way this run will make it. Bump a version with any change to decode, resize or crop that changes
a crop. Kept apart from the decoders so that planning (which compares versions) imports no image library.
"""
from visionfleet.pipeline.envvars import env_choice

# fast: JPEGs through libjpeg-turbo at M/8 scale (fast_jpeg.py), the rest through Pillow; the default since
# it matched the Pillow path on real photos (README "Faster JPEG decode"). cpu: Pillow for everything
# (decode.py). gpu: nvJPEG beside a CUDA model (gpu_decode.py); its crops were judged against Pillow's.
# Version "fast-1" was the first fast path (OpenCV's area resize): it is labelled again, never mixed.
VERSIONS = {"fast": "2", "cpu": "1", "gpu": "1"}
DECODERS = tuple(VERSIONS)
DEFAULT_DECODER = "fast"


def decoder_from_env() -> str:
    """The decode this process runs: VISIONFLEET_DECODE, checked against the names."""
    return env_choice("VISIONFLEET_DECODE", DEFAULT_DECODER, DECODERS)


def current() -> str:
    """The preprocess version this process's records name: what an incremental run plans for."""
    return VERSIONS[decoder_from_env()]

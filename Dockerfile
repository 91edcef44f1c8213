# One image for GPU and CPU workers and for the CLI.
# PyPI's torch==2.13.0 for Linux x86_64 bundles CUDA: it uses the GPU when
# the container is given one and runs on the CPU otherwise.
FROM python:3.11-slim

# tcmalloc: ~2-3x faster CPU inference (see workers/allocator.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY broker broker
COPY workers workers
COPY pipeline pipeline
COPY checkpoints checkpoints
COPY cli cli
COPY reports reports
COPY visionfleet visionfleet
RUN pip install --no-cache-dir '.[gpu]'

# /metrics, /healthz, /readyz (VISIONFLEET_METRICS_PORT)
EXPOSE 9808

RUN useradd --create-home visionfleet \
 && mkdir -p /var/cache/visionfleet && chown visionfleet /var/cache/visionfleet
USER visionfleet
ENTRYPOINT ["visionfleet"]
CMD ["worker"]

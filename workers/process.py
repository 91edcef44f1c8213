"""What a worker process holds for its whole life: its models and store.

Models load once per process, at start (``worker_process_init``, i.e. in
each pool child after the fork, never in the parent: torch's thread pools
do not survive a fork), and are reused by every task in that process.
"""
import logging
import os
import socket
import uuid

from celery.signals import worker_process_init

from broker.settings import BrokerSettings
from checkpoints import StateStore, open_store
from pipeline.labeller import Labeller, LoadSettings
from pipeline.models import DEFAULT_MODEL, RuntimeSettings, load_model
from pipeline.envvars import env_str
from workers import allocator
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


class ProcessContext:
    def __init__(self) -> None:
        self.settings = WorkerSettings.from_env()
        self.runtime = RuntimeSettings.from_env()
        self.load = LoadSettings.from_env()
        self.store: StateStore = open_store(BrokerSettings.from_env().state_url)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._labellers: dict[str, Labeller] = {}
        import torch

        # One process per core budget: more threads than cores is a cliff
        # (measured: two processes x 2 threads on 2 cores ran 40x slower).
        torch.set_num_threads(self.settings.torch_threads)

    def labeller(self, model_spec: str) -> Labeller:
        if model_spec not in self._labellers:
            model = load_model(model_spec, self.runtime)
            log.info("model loaded", extra={"model": model_spec, "owner": self.owner})
            self._labellers[model_spec] = Labeller(model, self.load)
        return self._labellers[model_spec]


_context: ProcessContext | None = None


def context() -> ProcessContext:
    """This process's context, built on first use."""
    global _context
    if _context is None:
        _context = ProcessContext()
    return _context


@worker_process_init.connect
def _preload(**_) -> None:
    ctx = context()
    ctx.labeller(env_str("VISIONFLEET_MODEL", DEFAULT_MODEL))
    log.info("worker process ready", extra={"owner": ctx.owner, "allocator": allocator.describe(),
                                             "torch_threads": ctx.settings.torch_threads})

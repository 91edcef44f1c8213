"""Decode in separate processes: one labelling process fed by N decode processes (VISIONFLEET_DECODE_PROCESSES).

Why: in threads, what a decode does in Python (the header, Pillow's wrappers, the copies) holds the
GIL, and so do the model thread's bookkeeping and the reading threads; the more cores decode for one
model, the more they wait for it. Processes share no GIL. The load threads still read, check and
look up the cache; each hands its file's bytes to a decode process and gets the crop back through
memory both processes map (memfds, whose descriptors are passed over the process's socket: nothing
is named, so nothing is left behind by any death).

Off by default, because on 2 cores it did not win: the hand-over costs the labelling process 0.3-0.7
ms of CPU an image (a round trip between two processes, each woken on a cold core), about what the
GIL costs threads there. A standing worker fed a 20,000 images/s model labelled a median 340 images/s
with two decode processes against 336 in threads (three pairs in turn; in an earlier two pairs,
339-348 against 405-445: README "Speed"). Where many cores decode for one fast device, which is
where the GIL costs most, measure it (``bench.fed``) before turning it on.

Each process is sent two requests at a time (one decoding, the next waiting in its socket), so it
never idles while its last crop is collected. The process's decode budget stays with the process
that holds it: it is taken, for the picture's source pixels read from its header, before the bytes
are sent, so the decode processes together never decode more than the budget allows.

A decode process that ends (killed, out of memory) takes down only the request in its hands: the
one waiting behind it is sent again to its replacement, and the one in hand is tried once more; a
picture that ends a decode process twice gets an error record. Should a replacement fail to start,
the load threads decode in this process, as they would with VISIONFLEET_DECODE_PROCESSES=0. A
decode process ends when its socket closes, so it never outlives its worker, even one killed with
SIGKILL; it ignores SIGINT and SIGTERM, which a terminal's Ctrl-C or a service manager sends to the
whole group, so that a worker's warm shutdown finishes its shard with its decoders.
"""
import logging
import mmap
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import nullcontext
from multiprocessing.connection import Connection
from multiprocessing.reduction import recvfds, sendfds

import numpy as np

from visionfleet.pipeline.decode import DEFAULT_MAX_PIXELS, Geometry, source_pixels
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.errors import ConfigError, InputError

log = logging.getLogger(__name__)

SLOTS = 2  # requests a decode process holds: one in hand, one waiting, so it never waits for the next
START_TIMEOUT_S = 60  # a decode process imports numpy, Pillow and simplejpeg: 0.3 s on an idle core


# glibc's malloc in a decode process: blocks under 16 MiB come from its heap, and up to 64 MiB of freed
# heap is kept. Left to itself, it gave each decode's large blocks (the file's bytes, the decoded picture)
# back to the kernel and faulted them in again: 244 page faults and 0.6 ms of system time an image.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(16 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


class _Ended(Exception):
    """The decode process ended before it answered; ``in_hand``: it was decoding this request."""

    def __init__(self, in_hand: bool, how: str) -> None:
        super().__init__(how)
        self.in_hand, self.how = in_hand, how


class _Unavailable(Exception):
    """The decode process could not be started again: decode here instead."""


class _Process:
    """One decode process, its socket and the thread that reads its answers; started again when it ends."""

    def __init__(self, decoder: str) -> None:
        self._decoder = decoder
        self._lock = threading.Lock()  # the socket's sends, ``_sent`` and a restart
        self._sent: OrderedDict[int, Future] = OrderedDict()  # slot -> its answer to come, in send order
        self._closing = False
        self.unavailable = False
        self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, self._decoder, str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         env={**os.environ, **_MALLOC})
        self.sock = ours
        self.conn = Connection(os.dup(ours.fileno()))
        # (slot, 0 for the file's buffer or 1 for the crop's) -> the id of the buffer this process has
        # mapped there; a new process has mapped none.
        self._mapped: dict[tuple[int, int], int] = {}

    def wait_ready(self) -> None:
        """Until the process says it is ready (its imports done), then read its answers in a thread."""
        try:
            ready = self.conn.poll(START_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.proc.kill()
            raise ConfigError(f"a decode process did not start ({_how(self.proc.wait())}; its error is above); "
                              "fix what it says, or set VISIONFLEET_DECODE_PROCESSES=0 to decode in threads")
        threading.Thread(target=self._answers, args=(self.conn, self.proc), daemon=True,
                         name="decode-answers").start()

    def send(self, slot: int, buffers: tuple["_Buffer", "_Buffer"], geometry: Geometry, max_pixels: int,
             size: int) -> Future:
        """Send one request, whose ``size`` bytes are in the first buffer; its answer comes in the future:
        ("ok", shape), the crop then in the second buffer, or (error kind, message). A buffer goes along
        the first time this process sees it."""
        future: Future = Future()
        with self._lock:
            if self.unavailable:
                raise _Unavailable()
            self._sent[slot] = future
            fresh = [self._mapped.get((slot, i)) != b.id for i, b in enumerate(buffers)]
            self._mapped.update({(slot, i): b.id for i, b in enumerate(buffers)})
            try:
                self.conn.send((slot, geometry, max_pixels, size, fresh))
                if any(fresh):
                    sendfds(self.sock, [b.fd for b, new in zip(buffers, fresh) if new])
            except OSError:  # it has ended: its answer thread fails this request with the others
                pass
        return future

    def _answers(self, conn: Connection, proc: subprocess.Popen) -> None:
        while True:
            try:
                slot, kind, detail = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._sent.pop(slot)
            future.set_result((kind, detail))
        self._replace(proc)

    def _replace(self, proc: subprocess.Popen) -> None:
        how = _how(proc.wait())
        with self._lock:
            sent, self._sent = list(self._sent.values()), OrderedDict()
            self.conn.close()
            self.sock.close()
            if self._closing:
                return
            log.warning("decode process ended; starting another", extra={"pid": proc.pid, "how": how})
            try:
                self._spawn()
                self.wait_ready()
            except Exception as exc:  # noqa: BLE001 -- whatever stops it, the load threads decode here instead
                self.unavailable = True
                log.error("decode process cannot start again; decoding in threads", extra={"error": str(exc)})
        for i, future in enumerate(sent):  # requests are decoded in the order sent: the first was in hand
            future.set_exception(_Ended(i == 0, how))

    def close(self) -> None:
        with self._lock:
            self._closing = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # the process sees its end; the answer thread wakes
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # deep in one huge picture: its answer is not wanted any more
            self.proc.kill()
            self.proc.wait()


class _Buffer:
    """Memory both processes map (a memfd): a file's bytes going out, or a crop coming back."""

    _ids = iter(range(1, 2**62))

    def __init__(self, size: int) -> None:
        self.id = next(self._ids)
        self.fd = os.memfd_create("visionfleet-decode", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class _Slot:
    """One request place in a decode process, with its two buffers: the file's bytes, the crop."""

    def __init__(self, process: _Process, index: int) -> None:
        self.process, self.index = process, index
        self._buffers: list[_Buffer | None] = [None, None]

    def decode(self, data: bytes, geometry: Geometry, max_pixels: int) -> np.ndarray:
        height, width = geometry.size
        into, out = self._fit(0, len(data)), self._fit(1, height * width * 3)
        into.map[:len(data)] = data
        kind, detail = self.process.send(self.index, (into, out), geometry, max_pixels, len(data)).result()
        if kind == "ok":
            return np.frombuffer(out.map, np.uint8, int(np.prod(detail))).reshape(detail).copy()
        if kind == "input":
            raise InputError(detail)
        if kind == "memory":
            raise MemoryError(detail)
        raise RuntimeError(f"in the decode process: {detail}")

    def _fit(self, which: int, size: int) -> _Buffer:
        """Buffer ``which``, replaced by a larger one (a power of two: few replacements) if under ``size``."""
        buffer = self._buffers[which]
        if buffer is None or len(buffer.map) < size:
            if buffer is not None:
                buffer.close()
            buffer = self._buffers[which] = _Buffer(1 << max(size - 1, 1).bit_length())
        return buffer

    def close(self) -> None:
        for buffer in self._buffers:
            if buffer is not None:
                buffer.close()
        self._buffers = [None, None]


class DecodeProcesses:
    """N decode processes for one process's load threads: called like ``decode_image``, thread-safe."""

    def __init__(self, decoder: str, processes: int) -> None:
        from visionfleet.pipeline.gpu_decode import pick_decoder

        self.decoder = decoder
        self._here = pick_decoder(decoder, "cpu")  # should a decode process not start again
        self._processes = [_Process(decoder) for _ in range(processes)]
        try:
            for process in self._processes:
                process.wait_ready()
        except ConfigError:
            self.close()
            raise
        self._slots = [_Slot(p, i) for i in range(SLOTS) for p in self._processes]  # spread over the processes
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._free.put(slot)
        log.info("decode processes started", extra={"processes": processes, "decode": decoder,
                                                     "pids": [p.proc.pid for p in self._processes]})

    def __call__(self, data: bytes, geometry: Geometry, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 budget: PixelBudget | None = None) -> np.ndarray:
        pixels = source_pixels(data, max_pixels)
        with budget.hold(pixels) if budget is not None and pixels else nullcontext():
            return self._decode(data, geometry, max_pixels)

    def _decode(self, data: bytes, geometry: Geometry, max_pixels: int) -> np.ndarray:
        in_hand = 0
        while True:
            slot = self._free.get()
            try:
                return slot.decode(data, geometry, max_pixels)
            except _Ended as ended:
                in_hand += ended.in_hand
                if in_hand == 2:
                    raise InputError(f"cannot process image: decoding it ended a decode process twice "
                                     f"({ended.how})") from None
            except _Unavailable:
                return self._here(data, geometry, max_pixels=max_pixels)
            finally:
                self._free.put(slot)

    def pids(self) -> list[int]:
        """The decode processes' ids, as they are now."""
        return [p.proc.pid for p in self._processes]

    def close(self) -> None:
        """End the decode processes and free their buffers; nothing is decoded here afterwards."""
        for process in self._processes:
            process.close()
        for slot in getattr(self, "_slots", ()):
            slot.close()


def _how(returncode: int) -> str:
    return f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit code {returncode}"


def serve(decoder: str, fd: int) -> None:
    """A decode process: answer requests on socket ``fd`` until it closes."""
    from visionfleet.pipeline.gpu_decode import pick_decoder

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when decoding stops: the socket closes
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    conn = Connection(os.dup(fd))
    decode = pick_decoder(decoder, "cpu")
    maps: dict[tuple[int, int], mmap.mmap] = {}  # (slot, 0: bytes in, 1: crop out) -> its buffer
    conn.send("ready")
    while True:
        try:
            slot, geometry, max_pixels, size, fresh = conn.recv()
            fds = recvfds(sock, sum(fresh)) if any(fresh) else []
        except (EOFError, OSError):
            return
        for which in (i for i, new in enumerate(fresh) if new):
            fd = fds.pop(0)
            if (slot, which) in maps:
                maps.pop((slot, which)).close()
            maps[slot, which] = mmap.mmap(fd, os.fstat(fd).st_size)
            os.close(fd)
        data = maps[slot, 0][:size]
        conn.send((slot, *_answer(decode, data, geometry, max_pixels, maps[slot, 1])))


def _answer(decode, data: bytes, geometry: Geometry, max_pixels: int, out: mmap.mmap) -> tuple[str, object]:
    try:
        crop = decode(data, geometry, max_pixels=max_pixels)
    except InputError as exc:
        return "input", str(exc)
    except MemoryError as exc:
        return "memory", str(exc) or "out of memory"
    except Exception as exc:  # noqa: BLE001 -- the worker gives the input its error record
        return "error", f"{type(exc).__name__}: {exc}"
    np.frombuffer(out, np.uint8, crop.size)[:] = crop.reshape(-1)
    return "ok", crop.shape


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))

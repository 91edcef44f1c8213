"""The decode budget: how many source pixels the images being decoded in one process may hold at once.

Why: decoding holds memory in proportion to an image's pixels, not to its file
size. A 1.3 MB progressive 9000 x 9000 JPEG keeps every DCT coefficient while it
decodes (2 bytes each, 1.5 to 3 per pixel: 243 to 486 MB), whatever scale it is
drafted at; other formats hold 4 bytes a pixel or more. Twelve such requests
at once took an online worker from 0.5 to 6.2 GB, and it runs 64 task threads.

So every decode takes its picture's pixels from one budget per process before
it starts and gives them back when it ends. A decode that does not fit waits,
in arrival order: first come, first served, so a large image is never starved
by a stream of small ones that each fit. An image larger than the whole
budget (a budget set below ``VISIONFLEET_MAX_PIXELS``) waits until the budget
is entirely free and takes all of it: it decodes alone, so it is never
refused for a limit the operator set on memory rather than on images.

Deadlock-free as long as a holder never waits on anything while holding:
the decoder takes the budget around the pixel work only, and the budget is
given back in ``finally``. Pure: no clock, no I/O; ``on_change`` reports
the state (for metrics), and a hook that fails is logged, never raised.
"""
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# (pixels held by decodes now, decodes waiting for budget), called under the budget's lock
OnChange = Callable[[int, int], None]


class PixelBudget:
    """A counting semaphore in pixels, granted in arrival order."""

    def __init__(self, capacity: int, on_change: OnChange | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"a pixel budget needs a capacity of at least 1, not {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._line: deque[object] = deque()  # one ticket per caller not yet granted, oldest first
        self._changed = threading.Condition()
        self._on_change = on_change

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.capacity - self._free

    @property
    def waiting(self) -> int:
        """Callers in line for the budget."""
        with self._changed:
            return len(self._line)

    @contextmanager
    def hold(self, pixels: int) -> Iterator[int]:
        """Hold ``pixels`` of the budget (at most all of it) for the ``with`` block; yields what was taken."""
        taken = self.acquire(pixels)
        try:
            yield taken
        finally:
            self.release(taken)

    def acquire(self, pixels: int) -> int:
        """Wait until this caller is first in line and its pixels fit, then take them.

        Returns the pixels taken (``pixels``, or the whole budget for a larger image),
        which the caller must ``release``; ``hold`` does both.
        """
        need = min(max(pixels, 0), self.capacity)
        ticket = object()
        with self._changed:
            if not self._line and self._free >= need:  # nobody in line and it fits: no ticket, no wake-ups
                self._free -= need
                self._report()
                return need
            self._line.append(ticket)
            try:
                if not self._granted(ticket, need):
                    self._report()
                    while not self._granted(ticket, need):
                        self._changed.wait()
            except BaseException:  # interrupted while waiting: leave the line to those behind
                self._line.remove(ticket)
                self._changed.notify_all()
                self._report()
                raise
            self._line.popleft()
            self._free -= need
            self._changed.notify_all()  # the next in line may fit as well
            self._report()
        return need

    def release(self, pixels: int) -> None:
        """Give back what ``acquire`` took."""
        with self._changed:
            if pixels > self.capacity - self._free:
                raise RuntimeError(f"released {pixels} pixels, but only {self.capacity - self._free} are taken")
            self._free += pixels
            if self._line:
                self._changed.notify_all()
            self._report()

    def _granted(self, ticket: object, need: int) -> bool:
        return self._line[0] is ticket and self._free >= need

    def _report(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.capacity - self._free, len(self._line))
        except Exception:  # a failing hook must not strand pixels a caller took, nor the callers in line
            log.exception("decode budget: on_change failed")

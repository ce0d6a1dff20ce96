"""When the garbage collector may stop a server process for a full collection.

A full collection visits every live container object, at about 1 µs each on a small VM. Under load the
SIP process keeps each INVITE transaction for Timer L (64·T1, 32 s), so at 1,000 calls/s it holds a few
hundred thousand objects, and Python's own rule (collect the oldest generation whenever it grew by a
quarter) stopped it for 100-430 ms every two seconds: that, not CPU, set the p99 of
``bench/sip_bench.py``. So the automatic full collection is off, and :class:`QuietCollector` runs it when
the process has been idle for a moment, or every ``every_s`` at the latest.

The HTTP workers run it too: with slow answers in flight they paused 40-70 ms every 2-5 s.

This is safe because the hot paths make no reference cycles that outlive the young generations
(``tests/test_sip_gc.py`` checks each kind of SIP call; ``tests/test_http_front.py`` a closed HTTP
connection), so their memory is freed by reference counting the moment it is dropped, as before. The
young generations are still collected automatically (they are small and cost a few ms at most); they
take the one cycle each HTTP request still makes (Werkzeug's URL matcher is a recursive closure) while
it is young. A full collection only catches cycles that rarer paths make.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator

from mock_server.metrics import GC_FULL

NEVER = 1 << 30
"""A third-generation threshold no run reaches: CPython counts young collections against it."""


class QuietCollector:
    """Full collections at quiet moments (and every ``every_s`` at the latest), none in between."""

    def __init__(self, loop: asyncio.AbstractEventLoop, activity: Callable[[], int], every_s: float, *,
                 idle_s: float = 1.0, min_gap_s: float = 30.0) -> None:
        self.loop, self.activity = loop, activity
        self.every_s, self.idle_s, self.min_gap_s = every_s, idle_s, min_gap_s
        self.last_full = time.monotonic()
        self._seen = -1
        self._timer: asyncio.TimerHandle | None = None
        self._thresholds = gc.get_threshold()

    def start(self) -> QuietCollector:
        gc.collect()
        gc.freeze()  # what start-up made (modules, tables, templates) is never visited again
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], NEVER)
        self._timer = self.loop.call_later(self.idle_s, self._tick)
        return self

    def _tick(self) -> None:
        seen, now = self.activity(), time.monotonic()
        quiet = seen == self._seen and now - self.last_full >= self.min_gap_s
        if quiet or now - self.last_full >= self.every_s:
            self.collect("idle" if quiet else "due")
        self._seen = seen
        self._timer = self.loop.call_later(self.idle_s, self._tick)

    def collect(self, why: str) -> None:
        """One full collection now."""
        gc.collect()
        self.last_full = time.monotonic()
        GC_FULL.labels(why).inc()

    def stop(self) -> None:
        """Give the collector's schedule back to Python."""
        if self._timer is not None:
            self._timer.cancel()
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()


@contextlib.contextmanager
def quiet_collections(loop: asyncio.AbstractEventLoop, activity: Callable[[], int], every_s: float) -> Iterator[None]:
    """A server process's main wait: full collections at quiet moments inside it (``every_s`` 0: Python's
    own schedule, ``--gc-full-s 0``)."""
    if every_s <= 0:
        yield
        return
    collector = QuietCollector(loop, activity, every_s).start()
    try:
        yield
    finally:
        collector.stop()

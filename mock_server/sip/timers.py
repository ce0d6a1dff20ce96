"""Timers on a clock their owner drives, so SIP state machines can be tested without an event loop.

:class:`Timers` is a heap of deadlines. Nothing runs by itself: the owner calls
:meth:`Timers.run_due`. A test steps a :class:`ManualClock` and calls ``run_due``;
the endpoint uses :class:`LoopTimers`, which asks the asyncio loop to wake it at
the next deadline. Wake-ups are coalesced to ``resolution`` seconds, so a burst of
calls with slightly different deadlines costs one loop callback, not one each.

Most SIP timers that end state (H, I, J, L: all 64·T1 or T4) share one delay.
Timers set with one fixed delay expire in the order they were set, so each such
delay gets a FIFO lane (:meth:`Timers.lane`) instead of the heap: O(1) to set,
and tens of thousands of pending expiries cost no heap upkeep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any


class TimerHandle:
    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock for tests: time moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Lane:
    """Timers that all have one delay, so a FIFO keeps them in deadline order."""

    def __init__(self, timers: Timers, delay: float) -> None:
        self.timers, self.delay = timers, delay
        self.queue: deque[TimerHandle] = deque()

    def call_later(self, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(self.timers.clock() + self.delay, fn, args)
        self.queue.append(handle)
        self.timers._added(handle.when)
        return handle


class Timers:
    """A deadline heap plus FIFO lanes. Cancelled handles stay until their deadline passes, then drop unrun."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()
        self._lanes: dict[float, Lane] = {}

    def lane(self, delay: float) -> Lane:
        """The FIFO lane for timers of exactly ``delay`` seconds."""
        lane = self._lanes.get(delay)
        if lane is None:
            lane = self._lanes[delay] = Lane(self, delay)
        return lane

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(self.clock() + delay, fn, args)
        heapq.heappush(self._heap, (handle.when, next(self._order), handle))
        self._added(handle.when)
        return handle

    def _added(self, when: float) -> None:
        """Hook for drivers: a deadline was added."""

    def run_due(self, now: float | None = None) -> int:
        """Run every timer whose deadline is at or before ``now`` (default: the clock); returns how many ran."""
        now = self.clock() if now is None else now
        heap, ran = self._heap, 0
        while heap and heap[0][0] <= now:
            ran += _run(heapq.heappop(heap)[2])
        for lane in self._lanes.values():
            queue = lane.queue
            while queue and queue[0].when <= now:
                ran += _run(queue.popleft())
        return ran

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        deadlines = [heap[0][0]] if heap else []
        for lane in self._lanes.values():
            queue = lane.queue
            while queue and queue[0].cancelled:
                queue.popleft()
            if queue:
                deadlines.append(queue[0].when)
        return min(deadlines) if deadlines else None

    def __len__(self) -> int:
        """Pending entries, cancelled ones not yet dropped included (a bound, not an exact count)."""
        return len(self._heap) + sum(len(lane.queue) for lane in self._lanes.values())

    def clear(self) -> None:
        for _, _, handle in self._heap:
            handle.cancel()
        self._heap.clear()
        for lane in self._lanes.values():
            for handle in lane.queue:
                handle.cancel()
            lane.queue.clear()


def _run(handle: TimerHandle) -> int:
    if handle.cancelled:
        return 0
    handle.cancelled = True  # a handle runs once
    handle.fn(*handle.args)
    return 1


class LoopTimers(Timers):
    """:class:`Timers` woken by an asyncio loop at the next deadline (at most every ``resolution`` s)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.002) -> None:
        super().__init__(loop.time)
        self.loop = loop
        self.resolution = resolution
        self._wake_at: float | None = None
        self._wake: asyncio.TimerHandle | None = None

    def _added(self, when: float) -> None:
        if self._wake_at is None or when < self._wake_at - self.resolution:
            self._schedule(when)

    def _schedule(self, when: float) -> None:
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = when
        self._wake = self.loop.call_at(when, self._run)

    def _run(self) -> None:
        self._wake, self._wake_at = None, None
        self.run_due()
        nxt = self.next_deadline()
        if nxt is not None:
            self._schedule(max(nxt, self.clock() + self.resolution))

    def clear(self) -> None:
        super().clear()
        if self._wake is not None:
            self._wake.cancel()
        self._wake, self._wake_at = None, None

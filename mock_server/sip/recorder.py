"""The SIP endpoint's journal: every message in and out, and call lifecycle events, in batches.

Rows and events are queued and handed to the sink (a writer thread or process,
``sink.py``) at most ``flush_ms`` after the first of a batch, so a burst of
datagrams costs one store transaction. The recorder also keeps this process's
newest view of each call's status, ahead of the batched write.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mock_server import metrics
from mock_server.core.calls import CallEvent
from mock_server.core.journal import redact_sip
from mock_server.core.store import sip_journal_row
from mock_server.server.console import Console
from mock_server.sip.common import format_addr
from mock_server.sip.message import KNOWN_METHODS
from mock_server.sip.peer import Peer
from mock_server.sip.sink import Sink

STATUS_MEMORY = 200_000
"""Calls whose newest status this process remembers ahead of the store."""


def _is_final(first_line: str) -> bool:
    """A status line of a final answer (2xx to 6xx)."""
    return first_line.startswith("SIP/2.0 ") and first_line[8:9] in ("2", "3", "4", "5", "6")


class Recorder:
    def __init__(self, sink: Sink, schedule: Callable[[float, Callable[[], None]], Any], *, body_limit: int,
                 flush_interval: float, salt: str = "", console: Console | None = None,
                 from_any_thread: Callable[..., Any] | None = None) -> None:
        self.sink = sink
        self.salt = salt
        self.console = console
        self.paused = False
        """Set while the mock answers its own readiness probe: nothing of it is journaled or printed."""
        self._requests: dict[str, Any] = {}
        self._responses: dict[str, Any] = {}
        self._retransmitted = {d: metrics.SIP_RETRANSMISSIONS.labels(d) for d in ("in", "out")}
        self._schedule = schedule
        self._from_any_thread = from_any_thread
        """Runs a callable on the endpoint's thread (``loop.call_soon_threadsafe``); the store's
        acknowledgements arrive on the writer's threads. None: statuses are only forgotten at the bound."""
        self.body_limit = body_limit
        self.flush_interval = flush_interval
        self.call_states: OrderedDict[str, str] = OrderedDict()
        """Statuses not yet in the store (and, without ``from_any_thread``, up to STATUS_MEMORY newest)."""
        self._settling: dict[str, str] = {}
        """Statuses set since the last batch: once that batch is stored, the store answers for them."""
        self._rows: list[tuple[Any, ...]] = []
        self._events: list[CallEvent] = []
        self._flush_scheduled = False
        self._addr_texts: dict[tuple[str, int], str] = {}
        self._counts: dict[Any, int] = {}
        """Metric increments not yet added (see ``_count``)."""

    def message(self, direction: str, peer: Peer, data: bytes, first_line: str, *, call_id: str | None,
                sip_call_id: str | None, decision: str | None = None, reason: str | None = None,
                to: tuple[str, int] | None = None) -> None:
        """Journal one SIP message (or connection event) with what was decided about it."""
        if self.paused:
            return
        self._count(direction, first_line, decision)
        if self.console is not None and direction == "out" and decision is None and _is_final(first_line):
            self.console.line("sip", what=first_line[8:], call_id=call_id)  # once per transaction
        limit = self.body_limit
        extra = {"raw_truncated": True, "raw_bytes": len(data)} if len(data) > limit else None
        self._rows.append(sip_journal_row(
            time.time(), call_id, redact_sip(data[:limit].decode("utf-8", "replace"), self.salt), direction,
            peer.transport, self._addr_text(peer.local), self._addr_text(to or peer.remote), first_line,
            sip_call_id, decision, reason, extra))
        self._schedule_flush()

    def _addr_text(self, addr: tuple[str, int]) -> str:
        """``host:port`` of an address, made once per address (bounded: a flood from many ports clears it)."""
        text = self._addr_texts.get(addr)
        if text is None:
            if len(self._addr_texts) >= 10_000:
                self._addr_texts.clear()
            text = self._addr_texts[addr] = format_addr(addr)
        return text

    def _count(self, direction: str, first_line: str, decision: str | None) -> None:
        """SIP metrics: requests in by method, responses out by code, retransmissions either way.

        Counted here and added to the metrics with each batch (``_take``): an increment of a multiprocess
        metric takes a lock, a getpid() and a write to its file, and a call has seven messages."""
        if decision == "retransmission":
            counter = self._retransmitted[direction]
        elif direction == "in" and not first_line.startswith("SIP/"):
            method = first_line.split(" ", 1)[0]
            if method not in KNOWN_METHODS:  # a label per method a peer makes up would grow without bound
                method = "other"
            counter = self._requests.get(method)
            if counter is None:
                counter = self._requests[method] = metrics.SIP_REQUESTS.labels(method)
        elif direction == "out" and first_line.startswith("SIP/2.0 "):
            code = first_line[8:11]
            counter = self._responses.get(code)
            if counter is None:
                counter = self._responses[code] = metrics.SIP_RESPONSES.labels(code)
        else:
            return
        counts = self._counts
        counts[counter] = counts.get(counter, 0) + 1

    def change(self, call_id: str | None, event: str, status: str | None = None, *,
               detail: dict[str, Any] | None = None, **fields: Any) -> None:
        """A step in a call's life: a timeline entry, maybe a new status, maybe call-object fields."""
        if call_id is None:
            return
        if self.console is not None:
            self.console.line("call", what=event, status=status, call_id=call_id,
                              reason=(detail or {}).get("why") or (fields or {}).get("end_call_reason"))
        if status is not None:
            states = self.call_states
            states[call_id] = status
            states.move_to_end(call_id)
            while len(states) > STATUS_MEMORY:
                states.popitem(last=False)
            self._settling[call_id] = status
        self._events.append(CallEvent(call_id, int(time.time() * 1000), event, status, detail, fields or None))
        self._schedule_flush()

    def status(self, call_id: str) -> str | None:
        """The newest status this process set for the call, if any."""
        return self.call_states.get(call_id)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self.flush_interval, self._flush_in_background)

    def _take(self) -> tuple[list[tuple[Any, ...]], list[CallEvent]] | None:
        self._flush_scheduled = False
        if self._counts:
            for counter, count in self._counts.items():
                counter.inc(count)
            self._counts.clear()
        rows, events = self._rows, self._events
        if not rows and not events:
            return None
        self._rows, self._events = [], []
        return rows, events

    def _flush_in_background(self) -> None:
        batch = self._take()
        if batch is None:
            return
        if self._settling:
            self._forget_once_stored(self.sink.submit(batch))
        else:
            self.sink.send(batch)

    def flush(self) -> concurrent.futures.Future[None]:
        """Queue everything recorded so far; the future is done once it is in the store."""
        stored = self.sink.submit(self._take())
        if self._settling:
            self._forget_once_stored(stored)
        return stored

    def _forget_once_stored(self, stored: concurrent.futures.Future[None]) -> None:
        """When ``stored`` is done, drop the statuses of this batch that nothing has changed since: the store
        has them now. Keeps the status memory to the calls in flight instead of the last 200,000."""
        settled, self._settling = self._settling, {}
        run_here = self._from_any_thread
        if run_here is None:
            return

        def done(future: concurrent.futures.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # not stored: the statuses stay until the bound
            with contextlib.suppress(RuntimeError):  # the loop closed while the writer finished
                run_here(self._forget, settled)

        stored.add_done_callback(done)

    def _forget(self, settled: dict[str, str]) -> None:
        states = self.call_states
        for call_id, status in settled.items():
            if states.get(call_id) == status:
                del states[call_id]

    def close(self) -> None:
        # If the writer is gone or stuck, stopping must still finish.
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            self.flush().result(timeout=30)
        self.sink.close()

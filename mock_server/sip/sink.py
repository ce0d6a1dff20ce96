"""Where the SIP endpoint's journal rows and call events go: a writer thread, or a writer process.

The endpoint hands over a batch every few milliseconds. In a test, a thread is
enough. In the standalone server a separate process does the SQLite work, so the
event loop never shares a GIL with it: at 2,000 calls/s the writes alone take
about a third of a core (bench/sip_bench.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mock_server.core.calls import CallEvent
from mock_server.core.store import Store, open_store

Batch = tuple[list[tuple[Any, ...]], list[CallEvent]]


class WriterGone(RuntimeError):
    """The writer process is no longer there to store batches."""


class Sink(Protocol):
    @property
    def failure(self) -> str | None:
        """Why new calls must be refused now (the store cannot record), or None."""

    def send(self, batch: Batch) -> None:
        """Queue a batch (the hot path): it is kept and retried until it is stored."""

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        """Queue a batch (None: nothing new); the future is done once it and all before it are stored."""

    def close(self) -> None: ...


class ThreadSink:
    """One writer thread: batches land in order; SQLite releases the GIL while it writes. A batch the
    store refuses is retried (later ones wait behind it) until it goes through or the sink closes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failure: str | None = None
        self._closing = False
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sip-journal")

    def _apply(self, batch: Batch) -> None:
        while True:
            try:
                self.store.apply(*batch)
            except Exception as exc:
                self.failure = f"journal store failing: {type(exc).__name__}: {exc}"
                if self._closing:
                    raise
                time.sleep(RETRY_S)
                continue
            self.failure = None
            return

    def send(self, batch: Batch) -> None:
        self._pool.submit(self._apply, batch)

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        if batch is None:
            return self._pool.submit(lambda: None)
        return self._pool.submit(self._apply, batch)

    def close(self) -> None:
        self._closing = True
        self._pool.shutdown(wait=True)


def _astuple(event: CallEvent) -> tuple[Any, ...]:
    return (event.call_id, event.time, event.event, event.status, event.detail, event.fields)


RETRY_S = 0.5
"""How often a writer retries a batch its store refused (a full disk, say)."""
MAX_UNACKED = 2_000
"""Batches held for a writer at most (about 20 s of traffic); beyond it the endpoint refuses calls."""


def _writer_main(path: str, journal_limit: int, calls_limit: int, journal_max_bytes: int, calls_max_bytes: int,
                 inbox: Any, acks: Any) -> None:
    """Apply batches in order and acknowledge each once it is in the store.

    A batch the store refuses is retried every ``RETRY_S`` (later batches wait behind it, so order
    holds), and the parent hears ``("error", cause)`` once and ``("ok", None)`` when it goes through.
    """
    import signal

    from mock_server.server.supervisor import die_with_parent

    # Stopping is the SIP process's call: it closes the pipe after its last batch, so a SIGTERM or
    # Ctrl-C sent to the whole process group must not kill the writer first and lose that batch.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
    store = None
    failing = False
    while True:
        try:
            data = inbox.recv_bytes()
        except EOFError:
            break
        token, wire = pickle.loads(data)
        while True:
            try:
                if store is None:
                    store = open_store(path, journal_limit=journal_limit, calls_limit=calls_limit,
                                       journal_max_bytes=journal_max_bytes, calls_max_bytes=calls_max_bytes)
                if wire is not None:
                    store.apply(wire[0], [CallEvent(*e) for e in wire[1]])
                break
            except Exception as exc:  # the store refused: say so once, keep the batch, try again
                if not failing:
                    acks.send(("error", f"{type(exc).__name__}: {exc}"))
                    failing = True
                time.sleep(RETRY_S)
        if failing:
            acks.send(("ok", None))
            failing = False
        acks.send(("ack", token))
    if store is not None:
        store.close()


class ProcessSink:
    """A writer process fed through a pipe; a sender thread pickles and sends, off the event loop.

    Every batch stays here until the writer acknowledges it. If the writer dies, a new one is
    started and the unacknowledged batches are sent again, in order, so nothing is lost (a batch
    the old writer stored but had not acknowledged may be stored twice). While the writer reports
    a failing store, or too many batches wait, :attr:`failure` says why, and the endpoint refuses
    new calls rather than take calls it cannot record.
    """

    def __init__(self, store: Store, on_status: Callable[[str | None], None] | None = None) -> None:
        if store.in_memory:
            raise ValueError("a writer process needs a file-backed store")
        self._store_args = (store.path, store.journal_limit, store.calls_limit, store.journal_max_bytes,
                            store.calls_max_bytes)
        self._ctx = multiprocessing.get_context("spawn")
        self._on_status = on_status
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sip-journal-send")
        self._waiting: dict[int, concurrent.futures.Future[None]] = {}
        self._unacked: dict[int, bytes] = {}
        self._next = 0
        self._closing = False
        self.restarts = 0
        self.store_failure: str | None = None
        self._lock = threading.RLock()
        """Guards the bookkeeping; held only for moments, so the event loop may take it."""
        self._pipe_lock = threading.Lock()
        """Guards the pipe to the writer. A send can block while the writer is busy retrying, so only the
        sender thread and a restart take it, never the event loop."""
        self._start_writer()

    def _start_writer(self) -> None:
        inbox_read, self._inbox = self._ctx.Pipe(duplex=False)
        self._acks, acks_write = self._ctx.Pipe(duplex=False)
        self._process = self._ctx.Process(target=_writer_main, name="synthflow-mock-sip-writer", daemon=True,
                                          args=(*self._store_args, inbox_read, acks_write))
        self._process.start()
        inbox_read.close()
        acks_write.close()
        reader = threading.Thread(target=self._read_acks, args=(self._acks,), name="sip-journal-acks", daemon=True)
        reader.start()

    @property
    def failure(self) -> str | None:
        """Why new calls must be refused now, or None."""
        if self.store_failure is not None:
            return f"journal store failing: {self.store_failure}"
        if len(self._unacked) > MAX_UNACKED:
            return f"journal writer behind by {len(self._unacked)} batches"
        return None

    def _status_changed(self) -> None:
        if self._on_status is not None:
            self._on_status(self.failure)

    def _read_acks(self, acks: Any) -> None:
        while True:
            try:
                kind, value = acks.recv()
            except (EOFError, OSError):
                break
            if kind == "ack":
                with self._lock:
                    self._unacked.pop(value, None)
                    future = self._waiting.pop(value, None)
                if future is not None:
                    future.set_result(None)
            else:
                self.store_failure = value if kind == "error" else None
                self._status_changed()
        self._writer_gone()

    def _writer_gone(self) -> None:
        """The writer exited: start another and send it every batch not yet acknowledged, in order."""
        with self._lock:
            if self._closing:
                for future in self._waiting.values():
                    future.set_exception(WriterGone("the SIP journal writer process exited"))
                self._waiting.clear()
                return
        with self._pipe_lock:
            self.restarts += 1
            self._process.join(1)
            with self._lock:
                pending = list(self._unacked.values())
            print(f"synthflow-mock SIP: the journal writer exited ({self._process.exitcode}); started another and "
                  f"sent it the {len(pending)} batch(es) it had not stored", file=sys.stderr, flush=True)
            self._start_writer()
            for data in pending:
                self._inbox.send_bytes(data)

    def _enqueue(self, batch: Batch | None) -> int:
        # Events travel as plain tuples: pickling slotted dataclasses goes through Python code.
        wire = None if batch is None else (batch[0], [tuple(e) for e in map(_astuple, batch[1])])
        with self._lock:
            self._next += 1
            token = self._next
            data = pickle.dumps((token, wire), protocol=pickle.HIGHEST_PROTOCOL)
            self._unacked[token] = data
        self._sender.submit(self._send, token)
        return token

    def _send(self, token: int) -> None:
        with self._pipe_lock:
            with self._lock:
                data = self._unacked.get(token)
            if data is None:
                return
            with contextlib.suppress(OSError):  # the writer is gone: _writer_gone sends it to the next one
                self._inbox.send_bytes(data)

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        """Send without waiting; the returned future resolves when the writer has stored it."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            token = self._enqueue(batch)
            if token in self._unacked:
                self._waiting[token] = future
            else:
                future.set_result(None)
        self._note_backlog()
        return future

    def send(self, batch: Batch) -> None:
        """Queue a batch (the hot path); it is kept until the writer acknowledges it."""
        self._enqueue(batch)
        self._note_backlog()

    def _note_backlog(self) -> None:
        """Tell the endpoint when too many batches wait for the writer (``failure`` then refuses calls)."""
        if len(self._unacked) > MAX_UNACKED:
            self._status_changed()

    def close(self) -> None:
        # When the writer cannot finish, shutting down must not hang on it.
        flushed = False
        with contextlib.suppress(WriterGone, concurrent.futures.TimeoutError):
            self.submit(None).result(timeout=10)
            flushed = True
        with self._lock:
            self._closing = True
        if not flushed:  # a writer stuck on a failing store: end it, so a send blocked on its pipe fails
            self._process.kill()
        self._sender.shutdown(wait=True)
        self._inbox.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._acks.close()


def make_sink(store: Store, *, process: bool) -> Sink:
    if process and not store.in_memory and os.environ.get("SYNTHFLOW_MOCK_SIP_WRITER", "process") == "process":
        return ProcessSink(store, on_status=store.shared.set_status)
    return ThreadSink(store)

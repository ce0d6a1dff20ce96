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
import threading
from typing import Any, Protocol

from mock_server.core.calls import CallEvent
from mock_server.core.store import Store

Batch = tuple[list[tuple[Any, ...]], list[CallEvent]]


class WriterGone(RuntimeError):
    """The writer process is no longer there to store batches."""


class Sink(Protocol):
    def send(self, batch: Batch) -> None:
        """Queue a batch, fire and forget (the hot path)."""

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        """Queue a batch (None: nothing new); the future is done once it and all before it are stored."""

    def close(self) -> None: ...


class ThreadSink:
    """One writer thread: batches land in order; SQLite releases the GIL while it writes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sip-journal")

    def send(self, batch: Batch) -> None:
        self._pool.submit(self.store.apply, *batch)

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        if batch is None:
            return self._pool.submit(lambda: None)
        return self._pool.submit(self.store.apply, *batch)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _astuple(event: CallEvent) -> tuple[Any, ...]:
    return (event.call_id, event.time, event.event, event.status, event.detail, event.fields)


def _writer_main(path: str, journal_limit: int, calls_limit: int, inbox: Any, acks: Any) -> None:
    import signal

    from mock_server.server.supervisor import die_with_parent

    # Stopping is the SIP process's call: it closes the pipe after its last batch, so a SIGTERM or
    # Ctrl-C sent to the whole process group must not kill the writer first and lose that batch.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
    store = Store(path, journal_limit=journal_limit, calls_limit=calls_limit)
    while True:
        try:
            data = inbox.recv_bytes()
        except EOFError:
            break
        token, wire = pickle.loads(data)
        if wire is not None:
            store.apply(wire[0], [CallEvent(*e) for e in wire[1]])
        if token is not None:
            acks.send(token)
    store.close()


class ProcessSink:
    """A writer process fed through a pipe; a sender thread pickles and sends, off the event loop."""

    def __init__(self, store: Store) -> None:
        if store.in_memory:
            raise ValueError("a writer process needs a file-backed store")
        ctx = multiprocessing.get_context("spawn")
        inbox_read, self._inbox = ctx.Pipe(duplex=False)
        self._acks, acks_write = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_writer_main, name="synthflow-mock-sip-writer", daemon=True,
                                    args=(store.path, store.journal_limit, store.calls_limit, inbox_read, acks_write))
        self._process.start()
        inbox_read.close()
        acks_write.close()
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sip-journal-send")
        self._waiting: dict[int, concurrent.futures.Future[None]] = {}
        self._next = 0
        self._alive = True
        self._lock = threading.Lock()
        self._ack_reader = threading.Thread(target=self._read_acks, name="sip-journal-acks", daemon=True)
        self._ack_reader.start()

    def _read_acks(self) -> None:
        while True:
            try:
                token = self._acks.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._waiting.pop(token, None)
            if future is not None:
                future.set_result(None)
        with self._lock:  # the writer is gone: nobody will answer, now or later
            self._alive = False
            for future in self._waiting.values():
                future.set_exception(WriterGone("the SIP journal writer process exited"))
            self._waiting.clear()

    def _send(self, token: int | None, batch: Batch | None) -> None:
        # Events travel as plain tuples: pickling slotted dataclasses goes through Python code.
        wire = None if batch is None else (batch[0], [tuple(e) for e in map(_astuple, batch[1])])
        self._inbox.send_bytes(pickle.dumps((token, wire), protocol=pickle.HIGHEST_PROTOCOL))

    def submit(self, batch: Batch | None) -> concurrent.futures.Future[None]:
        """Send without waiting; the returned future resolves when the writer has stored it."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if not self._alive:
                future.set_exception(WriterGone("the SIP journal writer process exited"))
                return future
            self._next += 1
            token = self._next
            self._waiting[token] = future
        self._sender.submit(self._send, token, batch)
        return future

    def send(self, batch: Batch) -> None:
        """Fire and forget (the hot path): no acknowledgement is asked for."""
        self._sender.submit(self._send, None, batch)

    def close(self) -> None:
        # When the writer is gone, nothing more can be written: shutting down must not hang on it.
        with contextlib.suppress(WriterGone, concurrent.futures.TimeoutError):
            self.submit(None).result(timeout=30)
        self._sender.shutdown(wait=True)
        self._inbox.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._acks.close()


def make_sink(store: Store, *, process: bool) -> Sink:
    if process and not store.in_memory and os.environ.get("SYNTHFLOW_MOCK_SIP_WRITER", "process") == "process":
        return ProcessSink(store)
    return ThreadSink(store)

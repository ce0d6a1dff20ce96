"""The HTTP front: an asyncio HTTP/1.1 server that reads, waits and writes, and runs the Flask app inline.

Why a front of our own and not a WSGI server: under WSGI every injected delay,
slow outcome and slow client holds the worker's thread (19 req/s at 50 ms of
latency, bench/RESULTS.md). Here nothing waits on a thread. The parts are
production ones (uvloop's event loop, httptools' C parser, both uvicorn's), and
the Flask app from ``create_app()`` still decides every answer.

The life of one request on a connection:

1. Its headers arrive within ``header_timeout_s`` of its first byte, and its body within
   ``body_timeout_s`` of the headers; otherwise the core answers 408 (journaled) and the
   connection closes. A body is read up to ``max_body_bytes`` + 1 bytes, so the core can
   answer 413 without the front reading more. Headers still incomplete after ``max_header_bytes``
   get 414 (still in the URL) or 431: no client grows a worker by sending headers without end.
2. The Flask app runs inline on the loop with the whole body in ``wsgi.input`` (marked
   ``wsgi.input_terminated``: a chunked body has no Content-Length, and without the mark
   Werkzeug reads it as empty); the core puts its store writes in ``environ[FRONT_KEY].writes``
   instead of committing them.
3. The writes of every request finished in this loop turn are committed in one transaction
   (group commit); only then do their answers go out, so a GET or an INVITE sent after an
   answer always finds what the answer reported (read-your-writes across workers).
4. An answer goes out at once, or after an awaited delay, or not at all: ``reset`` closes the
   socket with an RST, ``close`` (the timeout outcome) holds it, then closes it with a FIN.
5. A keep-alive connection with no request for ``idle_timeout_s`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import struct
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httptools

from mock_server.core.backend import Backend
from mock_server.core.exchange import Request, Response, Write
from mock_server.metrics import HTTP_DURATION, labeled
from mock_server.server.console import Console

FRONT_KEY = "synthflow_mock.front"
"""The environ key under which the front hands the app a :class:`FrontContext`."""
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class FrontSettings:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 64 * 1024


@dataclass(slots=True)
class FrontContext:
    """What the app tells the front beside its WSGI answer: writes to commit, and how to deliver."""

    writes: list[Write] = field(default_factory=list)
    delay_s: float = 0.0
    drop: str | None = None


@dataclass(slots=True)
class _Answer:
    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes
    context: FrontContext
    keep_alive: bool
    started: float = 0.0
    """Loop time of the request's first byte (for the console line's latency)."""
    due: float = 0.0
    """Loop time at which it may go out: when the app finished, plus its delay. Counting the delay from
    the request's own step, not from the group commit, keeps connections from moving in lockstep."""
    length: int = -1
    """The Content-Length to declare when it is not the body's: for HEAD, what GET would send."""


class _Date:
    """The Date header, formatted once a second at most."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self._at, self._value = loop, -1.0, b""

    def value(self) -> bytes:
        now = self.loop.time()
        if now - self._at >= 1.0:
            self._at, self._value = now, formatdate(usegmt=True).encode()
        return self._value


class Front:
    """One worker's server: the app, the backend it writes through, and the group commit.

    Group commit: every answer finished in one loop turn waits in ``_pending``; at the end of the
    turn their writes are committed in one transaction on the loop thread, then they go out (each
    when it is due). A writer thread was measured and lost: on a busy loop, passing the GIL back
    and forth cost more than the overlap gained (bench/RESULTS.md).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], backend: Backend, settings: FrontSettings,
                 loop: asyncio.AbstractEventLoop, console: Console | None = None) -> None:
        self.app, self.backend, self.settings, self.loop = app, backend, settings, loop
        self.console = console
        self.date = _Date(loop)
        self.worker_header = b"X-Mock-Worker: %d\r\n" % os.getpid()
        """Which worker process answered: load tests and the read-your-writes test look at it."""
        self._pending: list[tuple[HttpConnection, _Answer]] = []
        self._scheduled = False
        self.connections: set[HttpConnection] = set()
        self.requests = 0
        """Requests read so far (the quiet-moment garbage collector watches it)."""

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)

    def deliver_after_commit(self, conn: HttpConnection, answer: _Answer) -> None:
        answer.due = self.loop.time() + answer.context.delay_s
        self._pending.append((conn, answer))
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        writes = [w for _, answer in batch for w in answer.context.writes]
        if writes:
            try:
                self.backend.store.write(writes)
            except Exception as exc:
                batch = [(conn, self._unrecorded(answer, exc)) for conn, answer in batch]
            else:
                self.backend.health.recovered()
        for conn, answer in batch:
            conn.deliver(answer)

    def _unrecorded(self, answer: _Answer, exc: Exception) -> _Answer:
        """The backend's rule for an answer whose record was lost, applied to an answer already rendered."""
        stateful = any(w.call is not None for w in answer.context.writes)
        headers = dict(answer.headers)
        kept = Response(int(answer.status_line.split()[1]), answer.body, headers)
        decided = self.backend.unrecorded(kept, exc, stateful=stateful)
        if decided is kept:
            answer.headers = list(decided.headers.items())
            return answer
        status = f"{decided.status} Service Unavailable"
        return _Answer(f"HTTP/1.1 {status}\r\n".encode(), [("Content-Type", "application/json"),
                                                            *decided.headers.items()],
                       decided.body_bytes(), FrontContext(), answer.keep_alive, answer.due)

    def close(self) -> None:
        for conn in list(self.connections):
            conn.close()


_NO_PARSER = httptools.HttpRequestParser(object())
"""What a closed connection holds instead of its parser (never fed)."""


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, time out, answer in order (pipelined requests queue)."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.settings = front.settings
        self.loop = front.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = _NEVER
        """Loop time at which ``timer`` fires; it may be before ``deadline`` (it then re-arms itself)."""
        self.deadline = _NEVER
        """Loop time after which the current wait (``timed``) has lasted too long."""
        self.timed = ""
        """The phase ``deadline`` is for ("idle", "headers", "body"), or "" when nothing is timed."""
        self.queue: deque[tuple[str, bytes, list[tuple[bytes, bytes]], bytes, bool, float]] = deque()
        self.started = 0.0
        self.read_bytes = 0
        """Length of the read being parsed."""
        self.busy = False
        self.discard = False
        self.write_paused = False
        """The transport's buffer is over its high-water mark (the client is not reading): take no request
        until it drains, or a client that pipelines and never reads grows the buffer without end."""
        self._reset_message()

    def _reset_message(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = -1
        """This request's line and headers so far, counted at the end of each read they do not end in: in
        the read it began in, what the parser has given of it (that read may hold whole pipelined requests
        before it); every later read in full. -1: not counted yet."""
        self.head_reads = 0
        """The reads this request's head did not end in, in full: with the read being parsed, at least the
        head (the cheap test before the exact one in ``on_headers_complete``)."""
        self.expect: bytes | None = None
        """The request's Expect header, until it is answered (``_send_continue``; any expectation but
        100-continue is refused as the headers end)."""
        self.body = bytearray()
        self.phase = "idle"

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.remote = (transport.get_extra_info("peername") or ("", 0))[:2]
        self.local = (transport.get_extra_info("sockname") or ("", 0))[:2]
        self.front.connections.add(self)
        self._arm("idle", self.settings.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None
        self.front.connections.discard(self)
        # The parser holds this connection's bound callbacks: a reference cycle that only a full garbage
        # collection would free. Nothing is parsed after the close, so let reference counting free both now.
        self.parser = _NO_PARSER

    def data_received(self, data: bytes) -> None:
        if self.discard:
            return
        self.read_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._fail(400, f"Malformed HTTP request: {exc}")
            return
        phase = self.phase
        if phase == "headers" and not self.discard:
            self.head_bytes = self._head_size() if self.head_bytes < 0 else self.head_bytes + len(data)
            self.head_reads += len(data)
            if self.head_bytes > self.settings.max_header_bytes:
                self._head_too_large(self.head_bytes)
                return
        if phase == "body" and self.expect is not None and not self.discard:
            self._send_continue()  # the headers are in and the body is not: the client may be waiting for us
        if phase != "idle" and phase != self.timed and not self.discard:
            # A request is left part-read: its headers are due header_timeout_s after its first byte, its body
            # body_timeout_s after its headers, and both arrived in this call. (A whole request in one read, the
            # usual case, sets no timer at all.)
            self._arm(phase, self._read_wait_s(phase))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._take_next()

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_message()
        self.started = time.monotonic()
        self.phase = "headers"

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if len(name) == 6 and name.lower() == b"expect":
            self.expect = value

    def on_headers_complete(self) -> None:
        self.phase = "body"
        if self.head_reads + self.read_bytes > self.settings.max_header_bytes:  # else the head cannot be over
            size = self._head_size()
            if size > self.settings.max_header_bytes:
                self._head_too_large(size)
                return
        if self.expect is not None and self.expect.strip().lower() != b"100-continue":  # RFC 9110, 10.1.1
            self._fail(417, f"Expect: {self.expect.decode('latin-1')[:100]!r} is not supported; the only "
                            "expectation is 100-continue")

    def on_body(self, chunk: bytes) -> None:
        if self.discard:
            return
        limit = self.settings.max_body_bytes + 1
        if len(self.body) + len(chunk) >= limit:
            # Enough for the core to answer 413; the rest is not read, and the connection ends after the answer.
            self.body += chunk[:limit - len(self.body)]
            self.discard = True
            self._complete(keep_alive=False)
            return
        self.body += chunk

    def on_message_complete(self) -> None:
        if not self.discard:
            self._complete(keep_alive=self.parser.should_keep_alive())

    # -- requests -------------------------------------------------------------------------
    def _complete(self, keep_alive: bool) -> None:
        self._disarm()
        method = self.parser.get_method().decode("latin-1")
        self.queue.append((method, self.url, self.headers, bytes(self.body), keep_alive, self.started))
        self.phase = "idle"
        if not self.busy and not self.write_paused:
            self._next()

    def _next(self) -> None:
        if not self.queue or self.transport is None:
            return
        self.busy = True
        if self.transport is not None:
            self.transport.pause_reading()
        method, url, headers, body, keep_alive, started = self.queue.popleft()
        self.front.requests += 1
        answer = self._run_app(method, url, headers, body, keep_alive)
        answer.started = started
        self.front.deliver_after_commit(self, answer)

    def _run_app(self, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 keep_alive: bool) -> _Answer:
        parsed = httptools.parse_url(url)
        path = urllib.parse.unquote_to_bytes(parsed.path or b"/").decode("latin-1")
        context = FrontContext()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": (parsed.query or b"").decode("latin-1"),
            "SERVER_NAME": self.local[0], "SERVER_PORT": str(self.local[1]), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.remote[0], "REMOTE_PORT": str(self.remote[1]),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.input_terminated": True, FRONT_KEY: context,
        }
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
                environ[name] = value
            else:
                key = "HTTP_" + name
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started[:] = [status, response_headers]

        chunks = self.front.app(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, response_headers = started
        answer = _Answer(f"HTTP/1.1 {status}\r\n".encode("latin-1"), response_headers, payload, context, keep_alive)
        if method == "HEAD":  # Werkzeug sends no body but keeps GET's Content-Length; so does the front
            answer.length = next((int(v) for k, v in response_headers if k.lower() == "content-length"), 0)
        return answer

    def deliver(self, answer: _Answer) -> None:
        """Send (or withhold) one answer, now or when it is due."""
        wait = answer.due - self.loop.time()
        if wait > 0.0005:
            self.loop.call_later(wait, self._send, answer)
        else:
            self._send(answer)

    def _send(self, answer: _Answer) -> None:
        transport = self.transport
        self._observed(answer)
        if transport is None:
            return
        drop = answer.context.drop
        if drop == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            transport.abort()
            return
        if drop == "close":
            transport.close()
            return
        keep_alive = answer.keep_alive and not self.discard
        head = [answer.status_line]
        head.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in answer.headers
                    if name.lower() not in _FRONT_HEADERS)
        length = len(answer.body) if answer.length < 0 else answer.length
        head.append(b"Content-Length: %d\r\nDate: %s\r\n%s" % (length, self.front.date.value(),
                                                                 self.front.worker_header))
        head.append(b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        transport.write(b"".join(head) + answer.body)
        if not keep_alive:
            transport.close()
            return
        self.busy = False
        if not self.write_paused:
            self._take_next()

    def _take_next(self) -> None:
        """The connection is free: answer the next pipelined request, or read for one."""
        if self.queue:
            self._next()
        elif self.transport is not None:
            self.transport.resume_reading()
            # The idle wait, or the rest of a request part-read: its wait starts again now, since the front was
            # not reading while it answered (or while the client did not take its answers).
            phase = self.phase
            self._arm(phase, self.settings.idle_timeout_s if phase == "idle" else self._read_wait_s(phase))

    def _observed(self, answer: _Answer) -> None:
        """The answer's latency into the metrics, and its console line."""
        writes = answer.context.writes
        if not writes:
            return  # internal traffic (the readiness probe) is neither journaled, measured nor printed
        entry = writes[-1].entry
        latency = time.monotonic() - answer.started
        labeled(HTTP_DURATION, entry.get("route", "unrouted")).observe(latency)
        if self.front.console is None:
            return
        status = answer.context.drop or int(answer.status_line.split()[1])
        self.front.console.line("http", status=status, call_id=entry.get("call_id"),
                                what=f"{entry.get('method')} {entry.get('path')}", outcome=entry.get("outcome"),
                                reason=entry.get("reason") or entry.get("error"), latency_ms=latency * 1000)

    def _send_continue(self) -> None:
        """``Expect: 100-continue``: tell the client to send its body (curl otherwise waits a second, some
        clients until their timeout). Not to HTTP/1.0 clients (RFC 9110, 10.1.1), and not while an earlier
        pipelined answer is owed: a 100 must not come before it."""
        self.expect = None
        if not self.busy and self.transport is not None and self.parser.get_http_version() != "1.0":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- timeouts and failures ----------------------------------------------------------------
    # One timer per connection, re-armed lazily: a request read whole in one go moves ``deadline`` only when
    # its answer goes out (the idle wait), and the timer, still set for an earlier deadline, fires then and
    # sets itself for the new one. Cancelling and creating a timer three times per request cost about 6 µs.
    def _arm(self, phase: str, seconds: float) -> None:
        """Time the ``phase`` wait: it may last ``seconds`` from now."""
        self.timed = phase
        self.deadline = deadline = self.loop.time() + seconds
        if deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_at = self.loop.call_at(deadline, self._timer_fired), deadline

    def _disarm(self) -> None:
        self.timed, self.deadline = "", _NEVER

    def _timer_fired(self) -> None:
        self.timer, self.timer_at = None, _NEVER
        if self.transport is None or not self.timed:
            return
        if self.loop.time() < self.deadline - _TIMER_SLACK_S:  # the deadline moved since the timer was set
            self.timer, self.timer_at = self.loop.call_at(self.deadline, self._timer_fired), self.deadline
            return
        if self.timed == "idle":
            if not self.busy and self.phase == "idle":
                self.transport.close()
            return
        if self.busy or self.write_paused:  # the front is not reading: the wait is its own, not the client's
            self._arm(self.timed, self._read_wait_s(self.timed))
            return
        self._read_timeout()

    def _read_wait_s(self, phase: str) -> float:
        """How long the ``phase`` of a request ("headers" or "body") may take to arrive."""
        return self.settings.header_timeout_s if phase == "headers" else self.settings.body_timeout_s

    def _head_size(self) -> int:
        """The bytes of this request's line and headers the parser has given (a header still arriving is
        not among them)."""
        return len(self.url) + _REQUEST_LINE_EXTRA + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _head_too_large(self, size: int) -> None:
        """414 if the request line alone is over the limit (so far), else 431; ``size``: the head's bytes so far."""
        limit = self.settings.max_header_bytes
        if len(self.url) + _REQUEST_LINE_EXTRA > limit:
            self._fail(414, f"The request's URL is {len(self.url)} bytes or more; the limit is {limit}")
        else:
            self._fail(431, f"The request's headers are {size} bytes or more; the limit is {limit}")

    def _read_timeout(self) -> None:
        self._fail(408, f"The request's {self.phase} did not arrive within {self._read_wait_s(self.phase):g} s")

    def _fail(self, status: int, why: str) -> None:
        """Answer a request that cannot be read with a journaled JSON error, then close."""
        self._disarm()
        self.discard = True
        if self.busy or self.transport is None:  # an answer is on its way; just stop reading
            if self.transport is not None:
                self.transport.close()
            return
        partial = Request(
            method=(self.parser.get_method().decode("latin-1") if self.phase != "headers" or self.url else "")
            or "UNKNOWN", path=_path_of(self.url),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.headers},
            body=bytes(self.body), remote=self.remote[0])
        response = self.front.backend.unreadable(partial, status, why, phase=self.phase)
        if self.front.console is not None:
            self.front.console.line("http", status=status, what=f"{partial.method} {partial.path}", reason=why)
        body = response.body_bytes()
        head = [f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\n".encode()]
        head.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in response.headers.items())
        head.append(b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


_PHRASES = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large"}
"""RFC 9110's reason phrases for what ``_fail`` answers (Python 3.11's ``HTTPStatus`` still says "Request-URI")."""
_NEVER = float("inf")
_REQUEST_LINE_EXTRA = 16
"""About what a request line holds beside its URL (method, version, spaces, line end): the head bound is a
guard against memory growth, not a byte-exact limit."""
_TIMER_SLACK_S = 0.001
"""A timer that fires this close to its deadline counts as on time (the loop's clock ticks in milliseconds)."""
_FRONT_HEADERS = frozenset({"content-length", "connection", "date", "transfer-encoding"})
"""Headers the front writes itself, whatever the app set."""


def _path_of(url: bytes) -> str:
    try:
        return urllib.parse.unquote_to_bytes(httptools.parse_url(url).path or b"/").decode("latin-1")
    except httptools.HttpParserInvalidURLError:
        return url.decode("latin-1", "replace")[:200] or "/"

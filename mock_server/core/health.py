"""Whether this process can record what it answers, and what it could not record.

A store that fails (a full disk, a broken file, a dead writer) must never make the mock
lie: answers that create state are refused while it lasts, and ``/_mock/health`` says
``degraded`` with the cause. The console hears of it once, then at most every
``LOG_EVERY_S`` while it lasts, and once more when it is over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("synthflow_mock")
LOG_EVERY_S = 10.0


class StatusBoard(Protocol):
    """Where processes post why they cannot record (``SharedCounters``, ``RedisShared``)."""

    def set_status(self, cause: str | None, which: str = "sip") -> None: ...
    def status(self, which: str = "sip") -> str | None: ...


class Health:
    """One process's recording health; with a ``board``, HTTP workers also see each other's: a health
    request answered by a worker that records fine still says ``degraded`` while another cannot."""

    def __init__(self, what: str, board: StatusBoard | None = None) -> None:
        self.what = what
        self.board = board
        self._tag = f"{os.getpid()} "
        self.cause: str | None = None
        self.since: float | None = None
        self.unrecorded = 0
        """Journal entries of answers that were given (stateless ones) but could not be written."""
        self.refused = 0
        """Answers refused because their record could not be written."""
        self._logged_at = 0.0
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return self.cause is None

    def failed(self, exc: BaseException | str, *, unrecorded: int = 0, refused: int = 0) -> None:
        cause = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            first = self.cause is None
            self.cause = cause
            self.since = self.since or time.time()
            self.unrecorded += unrecorded
            self.refused += refused
            now = time.monotonic()
            self._post(self._tag + cause)  # every time: a worker that recovered may have cleared the board
            if first or now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                log.error("%s cannot record (%s): refusing what it cannot record; %d refused, %d journal entries "
                          "lost so far", self.what, cause, self.refused, self.unrecorded)

    def recovered(self) -> None:
        if self.cause is None:
            return
        with self._lock:
            log.warning("%s records again after %.1f s (was: %s)", self.what, time.time() - (self.since or 0),
                        self.cause)
            self.cause, self.since = None, None
            if self._posted().startswith(self._tag):  # ours: clear it (another worker's stays)
                self._post(None)

    def _post(self, cause: str | None) -> None:
        if self.board is not None:
            with contextlib.suppress(Exception):  # the board may live in the store that is failing (Redis)
                self.board.set_status(cause, "http")

    def _posted(self) -> str:
        if self.board is None:
            return ""
        try:
            return self.board.status("http") or ""
        except Exception:
            return ""

    def report(self) -> dict[str, Any]:
        cause = self.cause
        if cause is None:  # this worker records; does another?
            posted = self._posted()
            if posted and not posted.startswith(self._tag):
                pid, _, text = posted.partition(" ")
                cause = f"HTTP worker {pid}: {text}"
        return {"ok": cause is None, "cause": cause, "since": self.since, "refused": self.refused,
                "unrecorded": self.unrecorded}

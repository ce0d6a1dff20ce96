"""Whether this process can record what it answers, and what it could not record.

A store that fails (a full disk, a broken file, a dead writer) must never make the mock
lie: answers that create state are refused while it lasts, and ``/_mock/health`` says
``degraded`` with the cause. The console hears of it once, then at most every
``LOG_EVERY_S`` while it lasts, and once more when it is over.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("synthflow_mock")
LOG_EVERY_S = 10.0


class Health:
    def __init__(self, what: str) -> None:
        self.what = what
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

    def report(self) -> dict[str, Any]:
        return {"ok": self.ok, "cause": self.cause, "since": self.since, "refused": self.refused,
                "unrecorded": self.unrecorded}

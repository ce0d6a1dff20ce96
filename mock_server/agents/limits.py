"""Concurrency (live calls) and call attempts per second, counted in the shared store.

A prepare with limits reserves a slot per limit in one write transaction under the
store's cross-process lock, so two workers can never both take the last slot. A
slot taken at prepare time waits ``hold_s`` for its INVITE; an INVITE makes it
last until the call ends, when the store's writer releases it
(:func:`release`). Calls with no limits never touch these tables.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mock_server.agents.book import LimitKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS live_calls (
    key     TEXT NOT NULL,
    call_id TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (key, call_id)
);
CREATE INDEX IF NOT EXISTS live_calls_call_id ON live_calls(call_id);
CREATE INDEX IF NOT EXISTS live_calls_expiry ON live_calls(key, expires);
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT NOT NULL,
    t   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_key_t ON attempts(key, t);
"""

RATE_LIMIT_MESSAGE = ("Rate limit exceeded. Your rate limit per minute is {per_minute}. "
                      "Contact Sales to increase the rate limit.")
"""The text Synthflow's help centre shows for a 429 (``429: Rate limit exceeded. ...``)."""


@dataclass(frozen=True)
class Refusal:
    """Why a call was not admitted: which limit, its value, and what was counted."""

    key: str
    kind: str
    """``concurrency`` or ``caps``."""
    limit: float
    counted: int
    retry_after: int

    def message(self) -> str:
        per_minute = round(self.limit * 60) if self.kind == "caps" else "not the issue"
        what = (f"{self.counted} of {self.limit:g} concurrent calls are live" if self.kind == "concurrency"
                else f"{self.counted} call attempts in the last {_window(self.limit):g} s (caps {self.limit:g}/s)")
        text = RATE_LIMIT_MESSAGE.format(per_minute=per_minute) if self.kind == "caps" else \
            "Concurrency limit exceeded. Contact Sales to increase the rate limit."
        return f"{text} (synthflow-mock: {self.key}: {what})"


def _window(caps: float) -> float:
    """The sliding window CAPS are counted over: one second, or longer for fewer than one a second."""
    return 1.0 if caps >= 1 or caps <= 0 else 1.0 / caps


def reserve(conn: sqlite3.Connection, keys: Iterable[LimitKey], call_id: str, *, hold_s: float | None,
            count_attempt: bool, now: float | None = None) -> Refusal | None:
    """Take a slot under every limit in ``keys`` for ``call_id``, or none and say which limit refused.

    Runs inside the caller's write transaction. ``hold_s``: how long a prepared call keeps its slot
    without an INVITE (None: until the call ends). A call that already holds a slot keeps it.
    """
    now = time.time() if now is None else now
    keys = list(keys)
    taken_by_call = []
    for k in keys:
        if k.concurrency is not None:
            conn.execute("DELETE FROM live_calls WHERE key = ? AND expires IS NOT NULL AND expires <= ?", (k.key, now))
            held = conn.execute("SELECT 1 FROM live_calls WHERE key = ? AND call_id = ?", (k.key, call_id)).fetchone()
            if held is None:
                live = conn.execute("SELECT COUNT(*) FROM live_calls WHERE key = ?", (k.key,)).fetchone()[0]
                if live >= k.concurrency:
                    return Refusal(k.key, "concurrency", k.concurrency, live, 5)
            taken_by_call.append(k)
        if count_attempt and k.caps is not None:
            window = _window(k.caps)
            conn.execute("DELETE FROM attempts WHERE key = ? AND t <= ?", (k.key, now - window))
            recent = conn.execute("SELECT COUNT(*) FROM attempts WHERE key = ?", (k.key,)).fetchone()[0]
            if recent + 1 > k.caps * window:
                return Refusal(k.key, "caps", k.caps, recent, max(1, round(window)))
    expires = None if hold_s is None else now + hold_s
    conn.executemany("INSERT OR REPLACE INTO live_calls(key, call_id, expires) VALUES (?, ?, ?)",
                     [(k.key, call_id, expires) for k in taken_by_call])
    if count_attempt:
        conn.executemany("INSERT INTO attempts(key, t) VALUES (?, ?)",
                         [(k.key, now) for k in keys if k.caps is not None])
    return None


def any_live(conn: sqlite3.Connection) -> bool:
    """Whether any slot is held at all (one indexed probe, instead of a delete per ended call)."""
    return conn.execute("SELECT 1 FROM live_calls LIMIT 1").fetchone() is not None


def release(conn: sqlite3.Connection, call_ids: list[str]) -> None:
    """Give back the slots of calls that ended (inside the writer's transaction)."""
    conn.executemany("DELETE FROM live_calls WHERE call_id = ?", [(c,) for c in call_ids])


def live_counts(conn: sqlite3.Connection, now: float | None = None) -> dict[str, int]:
    """Live calls per limit key now (for ``GET /_mock/agents``)."""
    now = time.time() if now is None else now
    rows = conn.execute("SELECT key, COUNT(*) FROM live_calls WHERE expires IS NULL OR expires > ? GROUP BY key",
                        (now,)).fetchall()
    return {k: n for k, n in rows}

"""The embedded store shared by every door and every worker process.

SQLite in WAL mode (standard library, no server) lets several HTTP worker
processes and the SIP process see the same calls at once. ``":memory:"`` gives
a private in-memory store for the in-process door and single-process servers.

Two bounded tables: ``calls`` (prepared calls with their JSON object) and
``journal`` (every request and SIP message received, every answer sent).
Each bound evicts the oldest rows and counts what it evicted, so a reader can
always tell whether the record is complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    status  TEXT NOT NULL,
    data    TEXT NOT NULL,
    plan    TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    time    REAL NOT NULL,
    kind    TEXT NOT NULL,
    call_id TEXT,
    path    TEXT,
    entry   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_call_id ON journal(call_id);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters(name, value) VALUES ('journal_evicted', 0), ('calls_evicted', 0);
"""

JsonDict = dict[str, Any]


class Store:
    """Calls and journal in one SQLite database (a file path, or ``":memory:"``).

    One connection per process, guarded by a lock: SQLite serialises writers
    anyway, and a lock is cheaper than a connection per thread. The connection
    is reopened after ``fork`` so pre-fork servers can share the object.
    """

    def __init__(self, path: str = ":memory:", *, journal_limit: int = 10_000, calls_limit: int = 100_000) -> None:
        if journal_limit < 1 or calls_limit < 1:
            raise ValueError("store limits must be at least 1")
        self.path = path
        self.journal_limit = journal_limit
        self.calls_limit = calls_limit
        self._lock = threading.RLock()
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._connection()  # create the schema now, so a bad path fails at start-up

    # -- connection -------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            # Durability is not a goal for a mock; speed under load is.
            conn.execute("PRAGMA synchronous=OFF")
            if self.path != ":memory:":
                # Writers from several processes queue on a kernel file lock, which wakes the next
                # one at once; SQLite's own busy handler sleeps in whole milliseconds instead.
                self._lock_fd = os.open(self.path + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
            with self._file_lock():
                conn.executescript(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            with self._file_lock():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
            self._conn, self._lock_fd = None, None

    # -- writes -----------------------------------------------------------------
    def _append_journal(self, conn: sqlite3.Connection, entry: JsonDict) -> int:
        cur = conn.execute(
            "INSERT INTO journal(time, kind, call_id, path, entry) VALUES (?, ?, ?, ?, ?)",
            (entry["time"], entry["kind"], entry.get("call_id"), entry.get("path"), json.dumps(entry, default=str)),
        )
        seq = cur.lastrowid or 0
        if seq > self.journal_limit:
            gone = conn.execute("DELETE FROM journal WHERE seq <= ?", (seq - self.journal_limit,)).rowcount
            if gone:
                conn.execute("UPDATE counters SET value = value + ? WHERE name = 'journal_evicted'", (gone,))
        return seq

    def record(self, *entries: JsonDict) -> None:
        """Append journal entries (each a JSON-able dict with at least ``time`` and ``kind``)."""
        with self._transaction() as conn:
            for entry in entries:
                self._append_journal(conn, entry)

    def add_call(self, call: JsonDict, journal_entry: JsonDict, plan: JsonDict | None = None,
                 *, call_json: str | bytes | None = None) -> None:
        """Store a new call and its journal entry in one transaction.

        ``call_json`` is the call already encoded (the HTTP answer's bytes), to avoid encoding it twice.
        """
        data = call_json.decode() if isinstance(call_json, bytes) else call_json or json.dumps(call)
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO calls(id, status, data, plan) VALUES (?, ?, ?, ?)",
                (call["synthflow_call_id"], call["call_status"], data,
                 json.dumps(plan) if plan is not None else None),
            )
            seq = cur.lastrowid or 0
            if seq > self.calls_limit:
                gone = conn.execute("DELETE FROM calls WHERE seq <= ?", (seq - self.calls_limit,)).rowcount
                if gone:
                    conn.execute("UPDATE counters SET value = value + ? WHERE name = 'calls_evicted'", (gone,))
            self._append_journal(conn, journal_entry)

    def update_call(self, call_id: str, change: Callable[[JsonDict], JsonDict | None]) -> JsonDict | None:
        """Read, change and write one call atomically; ``change`` returns the new object or None to keep it.

        Returns the stored object after the change, or None when the call is unknown.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT data FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                return None
            call = json.loads(row[0])
            updated = change(call)
            if updated is None:
                return call
            conn.execute("UPDATE calls SET status = ?, data = ? WHERE id = ?",
                         (updated["call_status"], json.dumps(updated), call_id))
            return updated

    def apply(self, entries: list[JsonDict], changes: dict[str, list[Callable[[JsonDict], None]]]) -> None:
        """Append journal entries and apply queued changes to calls, all in one transaction.

        ``changes`` maps a call id to functions that mutate the call object in place; unknown
        ids are skipped (the call may have been evicted or reset meanwhile).
        """
        with self._transaction() as conn:
            for call_id, fns in changes.items():
                row = conn.execute("SELECT data FROM calls WHERE id = ?", (call_id,)).fetchone()
                if row is None:
                    continue
                call = json.loads(row[0])
                for fn in fns:
                    fn(call)
                conn.execute("UPDATE calls SET status = ?, data = ? WHERE id = ?",
                             (call["call_status"], json.dumps(call), call_id))
            for entry in entries:
                self._append_journal(conn, entry)

    def reset(self) -> None:
        """Forget every call and journal entry, and zero the eviction counters."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM calls")
            conn.execute("DELETE FROM journal")
            conn.execute("UPDATE counters SET value = 0")

    # -- reads ------------------------------------------------------------------
    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def get_call(self, call_id: str) -> JsonDict | None:
        rows = self._read("SELECT data FROM calls WHERE id = ?", (call_id,))
        return json.loads(rows[0][0]) if rows else None

    def call_status(self, call_id: str) -> str | None:
        rows = self._read("SELECT status FROM calls WHERE id = ?", (call_id,))
        return rows[0][0] if rows else None

    def get_plan(self, call_id: str) -> JsonDict | None:
        rows = self._read("SELECT plan FROM calls WHERE id = ?", (call_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def list_calls(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[JsonDict], int]:
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        total = self._read(f"SELECT COUNT(*) FROM calls {where}", args)[0][0]
        rows = self._read(f"SELECT data FROM calls {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [json.loads(r[0]) for r in rows], total

    def journal(
        self,
        *,
        call_id: str | None = None,
        path: str | None = None,
        kinds: tuple[str, ...] | None = None,
        since: float | None = None,
        after_seq: int | None = None,
        limit: int = 1000,
    ) -> list[JsonDict]:
        """Journal entries in arrival order, filtered; each carries its ``seq``."""
        clauses, args = [], []
        for column, value in (("call_id", call_id), ("path", path)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if after_seq is not None:
            clauses.append("seq > ?")
            args.append(after_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(f"SELECT seq, entry FROM journal {where} ORDER BY seq LIMIT ?", (*args, limit))
        return [{"seq": seq, **json.loads(entry)} for seq, entry in rows]

    def counters(self) -> dict[str, int]:
        counts = dict(self._read("SELECT name, value FROM counters"))
        counts["journal_size"] = self._read("SELECT COUNT(*) FROM journal")[0][0]
        counts["calls"] = self._read("SELECT COUNT(*) FROM calls")[0][0]
        return counts


def now() -> float:
    """Wall-clock seconds; one place to swap for a fake clock."""
    return time.time()

"""The embedded store shared by every door and every worker process.

SQLite in WAL mode (standard library, no server) lets several HTTP worker
processes and the SIP process see the same calls at once. ``":memory:"`` gives
a private in-memory store for the in-process door and single-process servers.

Two bounded tables: ``calls`` (prepared calls with their JSON object) and
``journal`` (every request and SIP message received, every answer sent).
Each bound evicts the oldest rows and counts what it evicted, so a reader can
always tell whether the record is complete.

A call's SIP lifecycle is stored as appended ``call_events`` rather than by
rewriting its JSON: the SIP endpoint writes three or four events per call at
thousands of calls a second, and an append is several times cheaper than a
read-modify-write. The current status is the newest event's (``_STATUS``), and
readers fold the events into the call object (``calls.apply_events``). SIP
journal rows use columns, not JSON, for the same reason.

The outcome engine keeps its shared state here too, so every worker agrees:
``scenarios`` (queued outcomes with uses left), ``settings`` (the seeded policy)
and ``counters`` (eviction counts, bytes kept, the journal's seq base). The settings version and the draw sequence
are read on every request, so they live in a mapped file (``counters.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mock_server.agents import limits
from mock_server.agents.book import LimitKey
from mock_server.core import jsonio
from mock_server.core.calls import ENDED, CallEvent, apply_events
from mock_server.core.counters import SharedCounters
from mock_server.core.exchange import Write
from mock_server.redis_store.urls import is_redis_url

_KEY_AT = 25
"""Where the key an id is indexed by first starts (1-based, as SQLite counts): its last group, which
``calls.IdSource`` makes the time for a fresh id, so the id indexes grow at one end."""


def _key(column: str) -> str:
    """SQL for the key of the id in ``column``."""
    return f"substr({column}, {_KEY_AT})"


def id_key(call_id: str) -> str:
    """The key of ``call_id``, as :func:`_key` computes it in SQL (a Python slice is SQLite's substr)."""
    return call_id[_KEY_AT - 1:]


def id_match(column: str = "id") -> str:
    """How every query finds a call (or its journal rows and events) by id, with :func:`id_args`: through
    the index on (key, id); any id is found, a fresh one on the index's last pages."""
    # A row value, not "key = ? AND id = ?": from "id = ?" SQLite's constant propagation would rewrite the
    # first term to substr(?, 25), which no index matches (it would scan the table).
    return f"({_key(column)}, {column}) = (?, ?)"


def id_args(call_id: str) -> tuple[str, str]:
    """The arguments of :func:`id_match` for ``call_id``."""
    return id_key(call_id), call_id


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS calls (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL,
    status  TEXT NOT NULL,
    data    TEXT NOT NULL,
    plan    TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    seq     INTEGER PRIMARY KEY,
    time    REAL NOT NULL,
    kind    TEXT NOT NULL,
    call_id TEXT,
    path    TEXT,
    entry   TEXT,
    raw     TEXT,
    direction   TEXT,
    transport   TEXT,
    local       TEXT,
    remote      TEXT,
    first_line  TEXT,
    sip_call_id TEXT,
    decision    TEXT,
    reason      TEXT,
    extra       TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS calls_by_id ON calls({_key("id")}, id);
DROP INDEX IF EXISTS journal_call_id;
CREATE INDEX IF NOT EXISTS journal_by_call ON journal({_key("call_id")}, call_id);
CREATE TABLE IF NOT EXISTS call_events (
    seq     INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    time    INTEGER NOT NULL,
    event   TEXT NOT NULL,
    status  TEXT,
    detail  TEXT,
    fields  TEXT
);
DROP INDEX IF EXISTS call_events_call_id;
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events({_key("call_id")}, call_id);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters(name, value) VALUES ('journal_evicted', 0), ('calls_evicted', 0),
    ('journal_bytes', 0), ('calls_bytes', 0), ('journal_seq_base', 0);
CREATE TABLE IF NOT EXISTS scenarios (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    match     TEXT NOT NULL,
    spec      TEXT NOT NULL,
    times     INTEGER NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

JsonDict = dict[str, Any]
WAL_RESTART_FRAMES = 4096
"""WAL frames (pages, 16 MiB at 4 KiB) past which the checkpointer restarts the WAL under the writers' lock."""
WAL_KEEP_BYTES = 32 * 2**20
"""A restarted WAL file is cut back to this size (``journal_size_limit``)."""
_EVENTS_OF_EVICTED_CALLS = (f"DELETE FROM call_events WHERE {_key('call_id')} IN "
                            f"(SELECT {_key('id')} FROM calls WHERE seq <= ?1) "
                            "AND call_id IN (SELECT id FROM calls WHERE seq <= ?1)")
_STATUS = (f"COALESCE((SELECT e.status FROM call_events e WHERE {_key('e.call_id')} = {_key('calls.id')} "
           "AND e.call_id = calls.id AND e.status IS NOT NULL ORDER BY e.seq DESC LIMIT 1), calls.status)")
"""A call's current status: its newest lifecycle event's, else the one it was prepared with."""
_SEQ_BASE = "(SELECT value FROM counters WHERE name = 'journal_seq_base')"
"""Added to a journal row's rowid to make the ``seq`` clients see. The tables have no AUTOINCREMENT (it
updated ``sqlite_sequence`` on every insert and wrote its page in every commit: 2 µs per stored prepare,
bench/RESULTS.md), so an emptied journal starts its rowids at 1 again; the base, moved past the last seq
whenever the journal is emptied, keeps seqs rising, as clients that follow the journal by seq need."""
_SEQ_BASE_PAST_THE_JOURNAL = ("UPDATE counters SET value = value + COALESCE((SELECT max(seq) FROM journal), 0) "
                              "WHERE name = 'journal_seq_base'")
_CALL_DATA = f"SELECT data FROM calls WHERE {id_match()}"
_CALL_STATUS = f"SELECT {_STATUS} FROM calls WHERE {id_match()}"
_CALL_STATUS_AND_PLAN = f"SELECT {_STATUS}, plan FROM calls WHERE {id_match()}"
_SIP_META = ("direction", "transport", "local", "remote", "first_line", "sip_call_id", "decision", "reason")
SIP_JOURNAL_COLUMNS = ("time", "kind", "call_id", "raw", *_SIP_META, "extra")
"""The columns of a row from :func:`sip_journal_row` (the Redis store reads such rows by these names too)."""
_ENTRY_JOURNAL_COLUMNS = ("time", "kind", "call_id", "path", "entry")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_JOURNAL_INSERTS = {len(columns): (_insert("journal", columns), columns.index(text))
                    for columns, text in ((_ENTRY_JOURNAL_COLUMNS, "entry"), (SIP_JOURNAL_COLUMNS, "raw"))}
"""A journal row's statement and the index of its text, by the row's length: a JSON entry binds only the five
columns it uses, a SIP message its thirteen. Python's sqlite3 runs its adapter lookup on every None it binds
(about 0.3 µs each), so the columns a row leaves empty are not bound at all."""


def checkpoint_pass(conn: sqlite3.Connection, lock_fd: int) -> None:
    """One pass of the checkpointer: copy what it can of the WAL without waiting for anyone, then, if the
    WAL holds more than :data:`WAL_RESTART_FRAMES`, restart it."""
    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames > WAL_RESTART_FRAMES:
        _restart_wal(conn, lock_fd)


def _restart_wal(conn: sqlite3.Connection, lock_fd: int) -> None:
    """Checkpoint the rest of the WAL and make the next writer start it from the beginning, holding the
    writers' file lock so none of them appends meanwhile. Readers are waited for 50 ms at most (a
    reader still in the WAL then makes it a plain checkpoint; the next pass tries again)."""
    conn.execute("PRAGMA busy_timeout=50")  # only RESTART waits on this connection (PASSIVE never does)
    with _flocked(lock_fd):
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()


@contextmanager
def _flocked(fd: int) -> Iterator[None]:
    """Hold the writers' file lock (``STATE.writelock``) on ``fd``."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class Store:
    """Calls and journal in one SQLite database (a file path, or ``":memory:"``).

    One connection per process, guarded by a lock: SQLite serialises writers
    anyway, and a lock is cheaper than a connection per thread. The connection
    is reopened after ``fork`` so pre-fork servers can share the object.
    """

    @classmethod
    def for_config(cls, config: Any) -> Any:
        """The store a :class:`~mock_server.core.config.MockConfig` describes: this one, or the Redis store
        for a ``redis://`` URL (same interface)."""
        return open_store(config.store_path, journal_limit=config.journal_limit, calls_limit=config.calls_limit,
                          journal_max_bytes=config.journal_max_bytes, calls_max_bytes=config.calls_max_bytes)

    def __init__(self, path: str = ":memory:", *, journal_limit: int = 10_000, calls_limit: int = 100_000,
                 journal_max_bytes: int = 256 * 2**20, calls_max_bytes: int = 256 * 2**20) -> None:
        if journal_limit < 1 or calls_limit < 1:
            raise ValueError("store limits must be at least 1")
        self.path = path
        self.journal_limit = journal_limit
        self.calls_limit = calls_limit
        self.journal_max_bytes = journal_max_bytes
        self.calls_max_bytes = calls_max_bytes
        self._lock = threading.RLock()
        """Serialises writers within this process (flock only excludes other processes)."""
        self._pid = -1
        self._shared: sqlite3.Connection | None = None
        self._local = threading.local()
        self._lock_fd: int | None = None
        self._checkpointer: tuple[threading.Event, threading.Thread] | None = None
        self._connection()  # create the schema now, so a bad path fails at start-up
        self.shared = SharedCounters(None if self.in_memory else path + ".counters")
        self._journal_due = _Bound("journal", "LENGTH(COALESCE(entry, raw, ''))", journal_limit, journal_max_bytes,
                                   before_emptying=_SEQ_BASE_PAST_THE_JOURNAL)
        self._calls_due = _Bound("calls", "LENGTH(data) + LENGTH(COALESCE(plan, ''))", calls_limit, calls_max_bytes,
                                 cleanup=_EVENTS_OF_EVICTED_CALLS)
        self._settings_seen: tuple[int, tuple[int, int]] | None = None

    # -- connection -------------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:"

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        if not self.in_memory:
            conn.execute("PRAGMA journal_mode=WAL")
        # Durability is not a goal for a mock; speed under load is.
        conn.execute("PRAGMA synchronous=OFF")
        # Debian's SQLite zeroes every deleted row and every freed page (SECURE_DELETE), so each eviction wrote
        # pages no one reads again: a quarter of a stored prepare's CPU at the bounds (bench/RESULTS.md). FAST
        # still zeroes deleted rows on the pages a commit writes anyway.
        conn.execute("PRAGMA secure_delete=FAST")
        conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        if self._checkpointer is not None:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it, off the hot path
        return conn

    def checkpoint_in_background(self, every_s: float = 0.5) -> None:
        """Move WAL checkpoints off the committing connections to a thread of their own.

        A checkpoint copies the WAL back into the database (milliseconds for a few MB). Left to
        SQLite, it runs inside whichever COMMIT crosses the threshold, and that request's answer
        waits: the tail of the latency. The thread's I/O runs without the GIL.

        A passive checkpoint never waits for anyone, so under steady writes it never catches up with
        the end of the WAL, and SQLite only starts a WAL over once it has: the file grew by about
        100 MB a second under ``wrk`` (4 GB after 40 s), and every request slowed as it grew. So once
        the WAL holds more than :data:`WAL_RESTART_FRAMES`, the thread takes the writers' lock for the
        few frames written since its passive pass and restarts the WAL (``wal_checkpoint(RESTART)``).
        """
        if self.in_memory or self._checkpointer is not None:
            return
        stop = threading.Event()

        def run() -> None:
            conn = self._open()
            # Its own open file, so its flock excludes this process's writers as well as the others'.
            lock_fd = self._open_lock_file()
            try:
                while not stop.wait(every_s):
                    with contextlib.suppress(sqlite3.Error):  # a full disk, say: try again next time
                        checkpoint_pass(conn, lock_fd)
            finally:
                os.close(lock_fd)
                conn.close()

        self._checkpointer = (stop, threading.Thread(target=run, name="sqlite-checkpoint", daemon=True))
        self._checkpointer[1].start()
        with self._lock:  # this thread's connection is open already; later ones are opened without it
            self._connection().execute("PRAGMA wal_autocheckpoint=0")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection. A file store gives each thread its own, so a reader never waits
        for a writer (WAL); an in-memory store has one connection, guarded by the lock."""
        pid = os.getpid()
        if self._pid != pid:  # first use, or a forked child: nothing inherited is usable
            self._pid, self._shared, self._local = pid, None, threading.local()
            if not self.in_memory:
                # Writers from several processes queue on a kernel file lock, which wakes the next
                # one at once; SQLite's own busy handler sleeps in whole milliseconds instead.
                self._lock_fd = self._open_lock_file()
            conn = self._open()
            with self._file_lock():
                conn.executescript(_SCHEMA + limits.SCHEMA)
            if self.in_memory:
                self._shared = conn
            else:
                self._local.conn = conn
        if self._shared is not None:
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    def _open_lock_file(self) -> int:
        return os.open(self.path + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self._lock_fd is None:
            yield
            return
        with _flocked(self._lock_fd):
            yield

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
        """Close this thread's connection (and the shared one of an in-memory store)."""
        if self._checkpointer is not None:
            self._checkpointer[0].set()
            self._checkpointer[1].join(5)
            self._checkpointer = None
        with self._lock:
            if self._pid != os.getpid():
                return
            conn = self._shared or getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
            self._shared, self._local = None, threading.local()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._pid = -1
            self.shared.close()

    # -- writes -----------------------------------------------------------------
    @staticmethod
    def _journal_row(entry: JsonDict | tuple[Any, ...]) -> tuple[Any, ...]:
        """A journal entry's row: a SIP row as ``sip_journal_row`` made it, or a JSON entry's five columns."""
        if isinstance(entry, tuple):  # already a row (sip_journal_row)
            return entry
        return entry["time"], entry["kind"], entry.get("call_id"), entry.get("path"), jsonio.dumps_text(entry)

    def _append_journal(self, conn: sqlite3.Connection, entry: JsonDict) -> None:
        self._append_journal_many(conn, [entry])

    def _append_journal_many(self, conn: sqlite3.Connection, entries: list[Any]) -> None:
        rows = [self._journal_row(e) for e in entries]
        size = 0
        for columns, run in itertools.groupby(rows, len):  # runs of one kind, so the journal keeps their order
            insert, text_at = _JOURNAL_INSERTS[columns]
            run_rows = list(run)
            conn.executemany(insert, run_rows)
            size += sum(len(r[text_at]) for r in run_rows)
        if self._journal_due.add(len(rows), size):
            self._journal_due.enforce(conn)

    def _insert_calls(self, conn: sqlite3.Connection, call_rows: list[tuple[Any, ...]]) -> None:
        conn.executemany("INSERT INTO calls(id, status, data, plan) VALUES (?, ?, ?, ?)", call_rows)
        if self._calls_due.add(len(call_rows), sum(len(r[2]) + len(r[3] or "") for r in call_rows)):
            self._calls_due.enforce(conn)

    def record(self, *entries: JsonDict) -> None:
        """Append journal entries (each a JSON-able dict with at least ``time`` and ``kind``)."""
        with self._transaction() as conn:
            self._append_journal_many(conn, list(entries))

    def write(self, writes: list[Write]) -> None:
        """Store the writes of one or more requests in one transaction (group commit): their calls and
        journal entries, each bound applied once for the whole group."""
        self.write_rows(*self.rows_for(writes))

    def rows_for(self, writes: list[Write]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows ``writes`` become (all the JSON encoding, none of the SQLite work)."""
        return call_rows(writes), [self._journal_row(w.entry) for w in writes]

    def write_rows(self, call_rows: list[tuple[Any, ...]], journal_rows: list[tuple[Any, ...]]) -> None:
        """Insert rows from :meth:`rows_for` in one transaction."""
        with self._transaction() as conn:
            if call_rows:
                self._insert_calls(conn, call_rows)
            self._append_journal_many(conn, journal_rows)

    def add_calls(self, new_calls: list[JsonDict], journal_entry: JsonDict) -> None:
        """Store many calls and one journal entry in one transaction (bulk pre-registration)."""
        with self._transaction() as conn:
            self._insert_calls(conn, [(c["synthflow_call_id"], c["call_status"], jsonio.dumps_text(c), None)
                                      for c in new_calls])
            self._append_journal(conn, journal_entry)

    def apply(self, entries: list[Any], events: list[CallEvent]) -> None:
        """Append journal entries (dicts, or rows from ``sip_journal_row``) and call events in one transaction."""
        with self._transaction() as conn:
            if events:
                # Appended only: the current status is the newest event's (see _STATUS), so the call row
                # with its JSON is never rewritten on the SIP hot path.
                conn.executemany("INSERT INTO call_events(call_id, time, event, status, detail, fields) "
                                 "VALUES (?, ?, ?, ?, ?, ?)",
                                 [(e.call_id, e.time, e.event, e.status,
                                   jsonio.dumps_text(e.detail) if e.detail else None,
                                   jsonio.dumps_text(e.fields) if e.fields else None) for e in events])
                ended = [e.call_id for e in events if e.status in ENDED]
                if ended and limits.any_live(conn):  # no limits configured: no slot to give back, no deletes
                    limits.release(conn, ended)
            if entries:
                self._append_journal_many(conn, entries)

    def reset(self) -> None:
        """Forget every call, journal entry and queued scenario; zero the counters. The policy stays.

        On a full disk the deletes need room in the WAL: a truncating checkpoint first gives back what
        it can."""
        if not self.in_memory:
            with self._lock, contextlib.suppress(sqlite3.Error):
                self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with self._transaction() as conn:
            conn.execute("DELETE FROM calls")
            conn.execute("DELETE FROM call_events")
            conn.execute(_SEQ_BASE_PAST_THE_JOURNAL)
            conn.execute("DELETE FROM journal")
            conn.execute("DELETE FROM scenarios")
            conn.execute("DELETE FROM live_calls")
            conn.execute("DELETE FROM attempts")
            conn.execute("UPDATE counters SET value = 0 WHERE name != 'journal_seq_base'")
        self.shared.reset_draws()
        self.shared.reset_ids()
        self.shared.bump_version()

    # -- outcome engine state (scenarios, policy, draw counters) ---------------------------
    def settings_state(self) -> tuple[int, int]:
        """(settings version, scenarios with uses left), read from SQLite only when the shared version
        moved: on the hot path this is a memory load."""
        version = self.shared.version()
        seen = self._settings_seen
        if seen is not None and seen[0] == version:
            return seen[1]
        live = self._read("SELECT COUNT(*) FROM scenarios WHERE remaining > 0")[0][0]
        state = (version, int(live))
        self._settings_seen = (version, state)
        return state

    def add_scenario(self, match: JsonDict, spec: JsonDict, times: int) -> int:
        with self._transaction() as conn:
            cur = conn.execute("INSERT INTO scenarios(match, spec, times, remaining) VALUES (?, ?, ?, ?)",
                               (json.dumps(match), json.dumps(spec), times, times))
        self.shared.bump_version()
        return cur.lastrowid or 0

    def scenarios(self) -> list[JsonDict]:
        rows = self._read("SELECT id, match, spec, times, remaining FROM scenarios ORDER BY id")
        return [{"id": i, "match": json.loads(m), **json.loads(sp), "times": t, "remaining": r}
                for i, m, sp, t, r in rows]

    def clear_scenarios(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM scenarios")
        self.shared.bump_version()

    def take_scenario(self, matches: Callable[[JsonDict, JsonDict], bool]) -> tuple[int, JsonDict] | None:
        """Consume one use of the oldest live scenario for which ``matches(match, spec)`` is true.

        The read and the decrement are one transaction under the cross-process write lock, so
        concurrent requests in any worker never share or lose a use.
        """
        taken = None
        with self._transaction() as conn:
            for sid, match, spec in conn.execute(
                    "SELECT id, match, spec FROM scenarios WHERE remaining > 0 ORDER BY id").fetchall():
                spec_doc = json.loads(spec)
                if matches(json.loads(match), spec_doc):
                    conn.execute("UPDATE scenarios SET remaining = remaining - 1 WHERE id = ?", (sid,))
                    taken = sid, spec_doc
                    break
        if taken is not None:
            self.shared.bump_version()  # the count of live scenarios may have changed
        return taken

    def policy(self) -> JsonDict | None:
        rows = self._read("SELECT value FROM settings WHERE name = 'policy'")
        return json.loads(rows[0][0]) if rows else None

    def set_policy(self, policy: JsonDict | None, *, only_if_unset: bool = False) -> None:
        if self._put_setting("policy", policy, only_if_unset):
            self.shared.reset_draws()
            self.shared.bump_version()

    def _put_setting(self, name: str, value: JsonDict | None, only_if_unset: bool) -> bool:
        """Replace (or, with a falsy value, remove) one settings document; False when ``only_if_unset``
        found one already. The caller bumps the shared version, after any other reset."""
        with self._transaction() as conn:
            if only_if_unset and conn.execute("SELECT 1 FROM settings WHERE name = ?", (name,)).fetchone():
                return False
            conn.execute("DELETE FROM settings WHERE name = ?", (name,))
            if value:
                conn.execute("INSERT INTO settings(name, value) VALUES (?, ?)", (name, json.dumps(value)))
        return True

    def agents_document(self) -> JsonDict | None:
        """The agents document (``contracts/agents.schema.json``), or None."""
        rows = self._read("SELECT value FROM settings WHERE name = 'agents'")
        return json.loads(rows[0][0]) if rows else None

    def set_agents(self, document: JsonDict | None, *, only_if_unset: bool = False) -> None:
        if self._put_setting("agents", document, only_if_unset):
            self.shared.bump_version()

    def reserve_limits(self, keys: list[LimitKey], call_id: str, *, hold_s: float | None,
                       count_attempt: bool, now: float | None = None) -> limits.Refusal | None:
        """Take a slot under each limit for the call, or say which refused (``limits.reserve``, under the
        cross-process lock so two workers never both take the last slot)."""
        with self._transaction() as conn:
            return limits.reserve(conn, keys, call_id, hold_s=hold_s, count_attempt=count_attempt, now=now)

    def live_counts(self) -> dict[str, int]:
        """Live calls per limit key (``agent:<model_id>``, ``workspace:<id>``)."""
        with self._lock:
            return limits.live_counts(self._connection())

    def next_draw(self) -> int:
        """The next number of the seeded draw sequence, shared by every worker process."""
        return self.shared.next_draw()

    def next_id_number(self) -> int:
        """The next number of the seeded call-id sequence, shared by every worker process."""
        return self.shared.next_id_number()

    # -- reads ------------------------------------------------------------------
    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.in_memory:
            with self._lock:
                return self._connection().execute(sql, args).fetchall()
        return self._connection().execute(sql, args).fetchall()

    def _events_for(self, ids: list[str]) -> dict[str, list[CallEvent]]:
        found: dict[str, list[CallEvent]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            # The index finds the rows by the ids' last group; "+" keeps SQLite from also using it for
            # call_id, which for a one-id chunk would bring back the constant propagation id_match avoids.
            rows = self._read(f"SELECT call_id, time, event, status, detail, fields FROM call_events "
                              f"WHERE {_key('call_id')} IN ({marks}) AND +call_id IN ({marks}) ORDER BY seq",
                              (*map(id_key, chunk), *chunk))
            for cid, t, event, status, detail, fields in rows:
                found.setdefault(cid, []).append(CallEvent(
                    cid, t, event, status, json.loads(detail) if detail else None,
                    json.loads(fields) if fields else None))
        return found

    def get_call(self, call_id: str) -> JsonDict | None:
        """The call object with its lifecycle events folded in."""
        rows = self._read(_CALL_DATA, id_args(call_id))
        if not rows:
            return None
        return apply_events(json.loads(rows[0][0]), self._events_for([call_id]).get(call_id, []))

    def call_status(self, call_id: str) -> str | None:
        rows = self._read(_CALL_STATUS, id_args(call_id))
        return rows[0][0] if rows else None

    def status_and_plan(self, call_id: str) -> tuple[str | None, JsonDict | None]:
        """The call's current status and the SIP plan chosen when it was prepared (None, None if unknown)."""
        rows = self._read(_CALL_STATUS_AND_PLAN, id_args(call_id))
        if not rows:
            return None, None
        return rows[0][0], json.loads(rows[0][1]) if rows[0][1] else None

    def call_state(self, call_id: str) -> tuple[str | None, JsonDict | None, int]:
        """:meth:`status_and_plan` and the settings version, as an INVITE needs them (one round trip for
        the Redis store; the version is a memory load here)."""
        return (*self.status_and_plan(call_id), self.shared.version())

    def call_parties(self, call_id: str) -> dict[str, str | None]:
        """model_id, workspace_id, from_number and to_number of a prepared call, read without decoding its JSON."""
        rows = self._read("SELECT json_extract(data, '$.model_id'), json_extract(data, '$.workspace_id'), "
                          "json_extract(data, '$.lead_phone_number'), json_extract(data, '$.agent_phone_number') "
                          f"FROM calls WHERE {id_match()}", id_args(call_id))
        row = rows[0] if rows else (None, None, None, None)
        return dict(zip(("model_id", "workspace_id", "from_number", "to_number"), row, strict=True))

    def list_calls(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[JsonDict], int]:
        where, args = (f"WHERE {_STATUS} = ?", (status,)) if status else ("", ())
        total = self._read(f"SELECT COUNT(*) FROM calls {where}", args)[0][0]
        rows = self._read(f"SELECT data FROM calls {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        found = [json.loads(r[0]) for r in rows]
        events = self._events_for([c["synthflow_call_id"] for c in found])
        return [apply_events(c, events.get(c["synthflow_call_id"], [])) for c in found], total

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
        if call_id is not None:
            clauses.append(id_match("call_id"))
            args.extend(id_args(call_id))
        if path is not None:
            clauses.append("path = ?")
            args.append(path)
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if after_seq is not None:
            clauses.append(f"seq > ? - {_SEQ_BASE}")
            args.append(after_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = ", ".join((f"seq + {_SEQ_BASE}", "time", "kind", "call_id", "entry", *SIP_JOURNAL_COLUMNS[3:]))
        rows = self._read(f"SELECT {columns} FROM journal {where} ORDER BY seq LIMIT ?", (*args, limit))
        out = []
        for seq, t, kind, call_id, entry, raw, *meta, extra in rows:
            if entry is not None:
                out.append({"seq": seq, **json.loads(entry)})
                continue
            item = {"seq": seq, "time": t, "kind": kind, "call_id": call_id,
                    **dict(zip(_SIP_META, meta, strict=True)), "raw": raw, "raw_bytes": len(raw.encode())}
            if extra:
                item.update(json.loads(extra))
            out.append(item)
        return out

    def counters(self) -> dict[str, int]:
        counts = dict(self._read("SELECT name, value FROM counters WHERE name != 'journal_seq_base'"))
        counts["settings_version"] = self.shared.version()
        counts["draws_http"] = self.shared.draws()
        counts["journal_size"] = self._read("SELECT COUNT(*) FROM journal")[0][0]
        counts["calls"] = self._read("SELECT COUNT(*) FROM calls")[0][0]
        return counts


def call_rows(writes: list[Write]) -> list[tuple[str, str, str, str | None]]:
    """(id, status, JSON, plan JSON) of each call the writes prepared: what either store keeps of a call."""
    return [(w.call["synthflow_call_id"], w.call["call_status"],
             w.call_json.decode() if w.call_json is not None else jsonio.dumps_text(w.call),
             jsonio.dumps_text(w.plan) if w.plan is not None else None) for w in writes if w.call is not None]


def open_store(path: str, **bounds: int) -> Any:
    """The store at ``path``: a ``redis://`` URL opens the Redis store (``mock_server.redis_store``),
    anything else this SQLite one. ``bounds``: the journal and calls limits."""
    if is_redis_url(path):
        try:
            from mock_server.redis_store.store import RedisStore
        except ImportError as exc:  # the redis package is an extra
            raise SystemExit(f"--store {path.split('://')[0]}:// needs the redis client: "
                             f"pip install 'synthflow-mock[redis]' ({exc})") from None
        return RedisStore(path, **bounds)
    return Store(path, **bounds)


def store_errors() -> tuple[type[Exception], ...]:
    """What a store raises when it refuses (a full disk, a locked file, Redis gone): answered 503, not 500."""
    try:
        import redis
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, redis.RedisError)


class _Bound:
    """One table's bounds, by rows and by bytes, and when to enforce them.

    Enforcing costs reads (and, once full, a delete) per commit. So this process enforces a bound
    after a sixteenth of it, or ``MAX_STEP`` rows, was written since its last check, whichever is
    less: a table may hold that much more per writing process before its oldest rows go. The cap
    keeps each eviction small: deleting a sixteenth of the default 100,000 calls at once held the
    commit (and every other writer, behind the file lock) for 76 ms, and even 256 rows (each a random
    index page or two) set the p99 at 2,000 req/s (10.5 ms against 7.2 ms with 32, for the same total
    work; bench/store_eviction.py, RESULTS.md). Small bounds (under 32 rows)
    are checked on every write, so they hold exactly. Bytes are the text of each row (its JSON or
    raw message), kept as a running total in ``counters``; evictions of either kind are counted.
    """

    MAX_STEP = 32

    def __init__(self, table: str, size_sql: str, rows: int, max_bytes: int, cleanup: str | None = None,
                 before_emptying: str | None = None) -> None:
        self.table, self.size_sql, self.rows, self.max_bytes, self.cleanup = table, size_sql, rows, max_bytes, cleanup
        self.before_emptying = before_emptying
        """Run when an eviction takes every row (a byte bound under one row), before the delete."""
        self.every = min(max(1, rows // 16), self.MAX_STEP) if rows >= 32 else 1
        self.every_bytes = max(1, max_bytes // 16)
        self.written = 0
        self.pending_bytes = 0

    def add(self, rows: int, size: int) -> bool:
        self.written += rows
        self.pending_bytes += size
        return self.written >= self.every or self.pending_bytes >= self.every_bytes

    def enforce(self, conn: sqlite3.Connection) -> None:
        table = self.table
        conn.execute(f"UPDATE counters SET value = value + ? WHERE name = '{table}_bytes'", (self.pending_bytes,))
        self.written = self.pending_bytes = 0
        last = conn.execute(f"SELECT max(seq) FROM {table}").fetchone()[0] or 0
        cutoff = last - self.rows
        total = conn.execute(f"SELECT value FROM counters WHERE name = '{table}_bytes'").fetchone()[0]
        if total > self.max_bytes:  # oldest rows until the rest fits
            over, freed = total - self.max_bytes, 0
            for seq, size in conn.execute(f"SELECT seq, {self.size_sql} FROM {table} ORDER BY seq"):
                freed += size
                if freed >= over:
                    cutoff = max(cutoff, seq)
                    break
        if cutoff <= 0:
            return
        freed = conn.execute(f"SELECT COALESCE(SUM({self.size_sql}), 0) FROM {table} WHERE seq <= ?",
                             (cutoff,)).fetchone()[0]
        if self.cleanup:
            conn.execute(self.cleanup, (cutoff,))
        if self.before_emptying and cutoff >= last:
            conn.execute(self.before_emptying)
        gone = conn.execute(f"DELETE FROM {table} WHERE seq <= ?", (cutoff,)).rowcount
        if gone:
            conn.execute(f"UPDATE counters SET value = value + ? WHERE name = '{table}_evicted'", (gone,))
            conn.execute(f"UPDATE counters SET value = MAX(0, value - ?) WHERE name = '{table}_bytes'", (freed,))


def sip_journal_row(time_s: float, call_id: str | None, raw: str, direction: str, transport: str, local: str,
                    remote: str, first_line: str, sip_call_id: str | None, decision: str | None,
                    reason: str | None, extra: JsonDict | None = None) -> tuple[Any, ...]:
    """A SIP journal entry as a row: columns, not JSON, since escaping a raw message's CRLFs on every
    write costs more than the rest of the entry. The SIP endpoint writes several per call."""
    return (time_s, "sip", call_id, raw, direction, transport, local, remote, first_line, sip_call_id,
            decision, reason, jsonio.dumps_text(extra) if extra else None)


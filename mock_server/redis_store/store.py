"""The store in Redis: several mock instances on several machines act as one mock.

It has the SQLite store's interface (``mock_server.core.store.Store``), so every door,
the SIP endpoint and its writer use either without knowing which. What lives where,
under a prefix (default ``synthflow-mock``):

- calls: ``c:<id>`` (a hash: the call's JSON, status, plan, size) ordered by ``calls``
  (a sorted set by prepare order); lifecycle events appended to ``e:<id>``;
- journal: ``j`` (seq -> entry JSON) for seqs ``jlow..jseq``, with ``jc:<call id>``
  listing each call's seqs; both bounds evict oldest first in the same script that
  writes, and ``counters`` counts what they evicted;
- outcome engine: scenarios ``scen:<id>`` with uses left, ``settings`` (policy,
  agents), the settings version ``ver`` and the draw sequence ``draws``;
- limits: ``live:<key>`` (call ids by expiry), ``att:<key>`` (attempts by time),
  ``ck:<call id>`` (the keys a call holds).

Every write is one script or one transaction, synchronous with the answer, so a
``GET`` or an INVITE on any instance right after a prepare's answer finds the call.
What stays in each process: SIP transactions and dialogs (a load balancer keeps a
caller on one instance, as SIP dispatchers do by Call-ID or source address).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from mock_server.agents.book import LimitKey
from mock_server.agents.limits import Refusal, _window
from mock_server.core import jsonio
from mock_server.core.calls import ENDED, CallEvent, apply_events
from mock_server.core.exchange import Write
from mock_server.core.store import SIP_JOURNAL_COLUMNS, call_rows
from mock_server.redis_store import scripts

JsonDict = dict[str, Any]
DEFAULT_PREFIX = "synthflow-mock"
_CHUNK = 500


class RedisShared:
    """The settings version, the draw sequence and the SIP writer's status, in Redis (the SQLite store
    keeps them in a mapped file: ``core/counters.py``)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r, self._p = client, prefix
        self._instance = os.environ.get("SYNTHFLOW_MOCK_INSTANCE") or socket.gethostname()

    def version(self) -> int:
        return int(self._r.get(f"{self._p}:ver") or 0)

    def bump_version(self) -> None:
        self._r.incr(f"{self._p}:ver")

    def next_draw(self) -> int:
        return int(self._r.incr(f"{self._p}:draws"))

    def draws(self) -> int:
        return int(self._r.get(f"{self._p}:draws") or 0)

    def reset_draws(self) -> None:
        self._r.set(f"{self._p}:draws", 0)

    def next_id_number(self) -> int:
        return int(self._r.incr(f"{self._p}:ids"))

    def reset_ids(self) -> None:
        self._r.set(f"{self._p}:ids", 0)

    def set_status(self, cause: str | None, which: str = "sip") -> None:
        """This instance's SIP writer (or last failing HTTP worker): None when it records, else why not."""
        field = f"{self._instance}:{which}"
        if cause is None:
            self._r.hdel(f"{self._p}:status", field)
        else:
            self._r.hset(f"{self._p}:status", field, cause)

    def status(self, which: str = "sip") -> str | None:
        found = self._r.hget(f"{self._p}:status", f"{self._instance}:{which}")
        return found.decode() if found else None

    def close(self) -> None:
        pass


class RedisStore:
    """Calls, journal, scenarios, settings, draws and limits in one Redis database.

    ``url``: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket);
    ``?prefix=name`` gives several mocks their own keys in one database.
    """

    in_memory = False

    def __init__(self, url: str, *, journal_limit: int = 10_000, calls_limit: int = 100_000,
                 journal_max_bytes: int = 256 * 2**20, calls_max_bytes: int = 256 * 2**20) -> None:
        if journal_limit < 1 or calls_limit < 1:
            raise ValueError("store limits must be at least 1")
        self.path = url
        self.journal_limit, self.calls_limit = journal_limit, calls_limit
        self.journal_max_bytes, self.calls_max_bytes = journal_max_bytes, calls_max_bytes
        query = parse_qs(urlsplit(url).query)
        self.prefix = (query.pop("prefix", [DEFAULT_PREFIX]))[0]
        self._pid = -1
        self._client: redis.Redis | None = None
        self._connect()
        self._settings_seen: tuple[int, tuple[int, int]] | None = None

    def _connect(self) -> redis.Redis:
        """This process's client (a pool of connections); made again after fork."""
        if self._pid != os.getpid() or self._client is None:
            url = urlsplit(self.path)
            query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(url.query).items() if k != "prefix")
            client = redis.Redis.from_url(url._replace(query=query).geturl(), socket_timeout=10,
                                          socket_connect_timeout=5, health_check_interval=30)
            self._apply = client.register_script(scripts.APPLY)
            self._take = client.register_script(scripts.TAKE_SCENARIO)
            self._reserve = client.register_script(scripts.RESERVE)
            self._client, self._pid = client, os.getpid()
            self.shared = RedisShared(client, self.prefix)
        return self._client

    @property
    def r(self) -> redis.Redis:
        return self._connect()

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def ping(self) -> None:
        """Raise unless the server answers (start-up's check)."""
        self.r.ping()

    def checkpoint_in_background(self, every_s: float = 0.5) -> None:
        """Nothing to do: Redis persists (or not) as its own configuration says."""

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client, self._pid = None, -1

    # -- writes -----------------------------------------------------------------
    def _run_apply(self, call_rows: list[tuple[Any, ...]], events: list[CallEvent], entries: list[Any]) -> None:
        self._connect()
        args: list[Any] = [self.prefix, self.journal_limit, self.journal_max_bytes, self.calls_limit,
                           self.calls_max_bytes, len(call_rows), len(events), len(entries)]
        for call_id, status, data, plan in call_rows:
            args += (call_id, status, data, plan or "")
        for e in events:
            encoded = jsonio.dumps([e.time, e.event, e.status, e.detail or None, e.fields or None])
            args += (e.call_id, e.status or "", "1" if e.status in ENDED else "0", encoded)
        for entry in entries:
            call_id, encoded = _encode_entry(entry)
            args += (call_id or "", encoded)
        self._apply(args=args)

    def record(self, *entries: JsonDict) -> None:
        self._run_apply([], [], list(entries))

    def write(self, writes: list[Write]) -> None:
        """The calls and journal entries of a group of requests, in one script."""
        self._run_apply(call_rows(writes), [], [w.entry for w in writes])

    def add_calls(self, new_calls: list[JsonDict], journal_entry: JsonDict) -> None:
        for start in range(0, len(new_calls), _CHUNK):
            chunk = new_calls[start:start + _CHUNK]
            rows = [(c["synthflow_call_id"], c["call_status"], jsonio.dumps_text(c), None) for c in chunk]
            self._run_apply(rows, [], [journal_entry] if start + _CHUNK >= len(new_calls) else [])

    def apply(self, entries: list[Any], events: list[CallEvent]) -> None:
        self._run_apply([], events, entries)

    def reset(self) -> None:
        """Forget calls, journal, scenarios and limit slots; zero the counters. The policy and agents stay,
        and journal seqs keep rising (a ``tail`` that follows by seq sees only what is new)."""
        keep = {self._key(n) for n in ("settings", "ver", "jseq", "cseq", "scen:seq")}
        with self.r.pipeline(transaction=False) as pipe:
            for key in self.r.scan_iter(match=f"{self.prefix}:*", count=1000):
                if key.decode() not in keep:
                    pipe.unlink(key)
            pipe.execute()
        high = int(self.r.get(self._key("jseq")) or 0)
        self.r.set(self._key("jlow"), high + 1)
        self.shared.reset_draws()
        self.shared.reset_ids()
        self.shared.bump_version()

    # -- outcome engine state -------------------------------------------------------------
    def settings_state(self) -> tuple[int, int]:
        """(settings version, scenarios with uses left): one read of the version per request, the
        scenarios only when it moved."""
        version = self.shared.version()
        seen = self._settings_seen
        if seen is not None and seen[0] == version:
            return seen[1]
        state = (version, len(self._live_scenarios()))
        self._settings_seen = (version, state)
        return state

    def _scenario_rows(self) -> list[tuple[int, dict[bytes, bytes]]]:
        ids = [int(i) for i in self.r.zrange(self._key("scen:ids"), 0, -1)]
        with self.r.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hgetall(self._key(f"scen:{sid}"))
            rows = pipe.execute()
        return [(sid, row) for sid, row in zip(ids, rows, strict=True) if row]

    def _live_scenarios(self) -> list[tuple[int, dict[bytes, bytes]]]:
        return [(sid, row) for sid, row in self._scenario_rows() if int(row[b"remaining"]) > 0]

    def add_scenario(self, match: JsonDict, spec: JsonDict, times: int) -> int:
        sid = int(self.r.incr(self._key("scen:seq")))
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(f"scen:{sid}"), mapping={"match": json.dumps(match), "spec": json.dumps(spec),
                                                         "times": times, "remaining": times})
            pipe.zadd(self._key("scen:ids"), {str(sid): sid})
            pipe.incr(self._key("ver"))
            pipe.execute()
        return sid

    def scenarios(self) -> list[JsonDict]:
        return [{"id": sid, "match": json.loads(row[b"match"]), **json.loads(row[b"spec"]),
                 "times": int(row[b"times"]), "remaining": int(row[b"remaining"])}
                for sid, row in self._scenario_rows()]

    def clear_scenarios(self) -> None:
        ids = self.r.zrange(self._key("scen:ids"), 0, -1)
        with self.r.pipeline(transaction=True) as pipe:
            for sid in ids:
                pipe.unlink(self._key(f"scen:{sid.decode()}"))
            pipe.unlink(self._key("scen:ids"))
            pipe.incr(self._key("ver"))
            pipe.execute()

    def take_scenario(self, matches: Callable[[JsonDict, JsonDict], bool]) -> tuple[int, JsonDict] | None:
        """Consume one use of the oldest live scenario that ``matches``.

        The match is Python, so it runs here; the use is taken by a script that decrements only while
        uses are left. Losing the race for a last use moves on to the next match: every instance together
        consumes a scenario exactly ``times`` times."""
        for sid, row in self._live_scenarios():
            spec = json.loads(row[b"spec"])
            if not matches(json.loads(row[b"match"]), spec):
                continue
            if int(self._take(args=[self.prefix, sid])) >= 0:
                return sid, spec
        return None

    def policy(self) -> JsonDict | None:
        return self._setting("policy")

    def set_policy(self, policy: JsonDict | None, *, only_if_unset: bool = False) -> None:
        if self._put_setting("policy", policy, only_if_unset):
            self.shared.reset_draws()
            self.shared.bump_version()

    def agents_document(self) -> JsonDict | None:
        return self._setting("agents")

    def set_agents(self, document: JsonDict | None, *, only_if_unset: bool = False) -> None:
        if self._put_setting("agents", document, only_if_unset):
            self.shared.bump_version()

    def _setting(self, name: str) -> JsonDict | None:
        found = self.r.hget(self._key("settings"), name)
        return json.loads(found) if found else None

    def _put_setting(self, name: str, value: JsonDict | None, only_if_unset: bool) -> bool:
        key = self._key("settings")
        if only_if_unset:
            return bool(self.r.hsetnx(key, name, json.dumps(value))) if value else not self.r.hexists(key, name)
        if value:
            self.r.hset(key, name, json.dumps(value))
        else:
            self.r.hdel(key, name)
        return True

    def next_draw(self) -> int:
        return self.shared.next_draw()

    def next_id_number(self) -> int:
        return self.shared.next_id_number()

    # -- limits -----------------------------------------------------------------------------
    def reserve_limits(self, keys: list[LimitKey], call_id: str, *, hold_s: float | None,
                       count_attempt: bool, now: float | None = None) -> Refusal | None:
        """``limits.reserve`` in one script: no two instances can take the last slot."""
        self._connect()
        args: list[Any] = [self.prefix, call_id, time.time() if now is None else now,
                           -1 if hold_s is None else hold_s, "1" if count_attempt else "0", len(keys)]
        for k in keys:
            args += (k.key, "" if k.concurrency is None else k.concurrency, "" if k.caps is None else k.caps,
                     _window(k.caps) if k.caps is not None else 0)
        refused = self._reserve(args=args)
        if not refused:
            return None
        key, kind, limit, counted, retry_after = refused
        return Refusal(key.decode(), kind.decode(), float(limit), int(counted), int(retry_after))

    def live_counts(self) -> dict[str, int]:
        now = time.time()
        keys = sorted(k.decode() for k in self.r.smembers(self._key("livekeys")))
        with self.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zcount(self._key(f"live:{key}"), f"({now}", "+inf")
            counts = pipe.execute()
        return {k: int(n) for k, n in zip(keys, counts, strict=True) if n}

    # -- reads ------------------------------------------------------------------
    def _events(self, call_ids: list[str]) -> list[list[CallEvent]]:
        with self.r.pipeline(transaction=False) as pipe:
            for cid in call_ids:
                pipe.lrange(self._key(f"e:{cid}"), 0, -1)
            found = pipe.execute()
        return [_events_of(cid, rows) for cid, rows in zip(call_ids, found, strict=True)]

    def get_call(self, call_id: str) -> JsonDict | None:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(self._key(f"c:{call_id}"), "data")
            pipe.lrange(self._key(f"e:{call_id}"), 0, -1)
            data, events = pipe.execute()
        if data is None:
            return None
        return apply_events(json.loads(data), _events_of(call_id, events))

    def call_status(self, call_id: str) -> str | None:
        found = self.r.hget(self._key(f"c:{call_id}"), "status")
        return found.decode() if found is not None else None

    def status_and_plan(self, call_id: str) -> tuple[str | None, JsonDict | None]:
        status, plan = self.r.hmget(self._key(f"c:{call_id}"), "status", "plan")
        if status is None:
            return None, None
        return status.decode(), json.loads(plan) if plan else None

    def call_state(self, call_id: str) -> tuple[str | None, JsonDict | None, int]:
        """Status, plan and settings version in one round trip (the SIP endpoint's read per INVITE)."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hmget(self._key(f"c:{call_id}"), "status", "plan")
            pipe.get(self._key("ver"))
            (status, plan), version = pipe.execute()
        return (status.decode() if status is not None else None, json.loads(plan) if plan else None,
                int(version or 0))

    def call_parties(self, call_id: str) -> dict[str, str | None]:
        data = self.r.hget(self._key(f"c:{call_id}"), "data")
        call = json.loads(data) if data else {}
        return {"model_id": call.get("model_id"), "workspace_id": call.get("workspace_id"),
                "from_number": call.get("lead_phone_number"), "to_number": call.get("agent_phone_number")}

    def list_calls(self, *, status: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[JsonDict], int]:
        calls_key = self._key("calls")
        if status is None:
            ids = [i.decode() for i in self.r.zrevrange(calls_key, offset, offset + limit - 1)]
            total = int(self.r.zcard(calls_key))
        else:
            ids, total = [], 0
            for chunk in self._chunks(self.r.zrevrange(calls_key, 0, -1)):
                names = [i.decode() for i in chunk]
                with self.r.pipeline(transaction=False) as pipe:
                    for cid in names:
                        pipe.hget(self._key(f"c:{cid}"), "status")
                    statuses = pipe.execute()
                for cid, found in zip(names, statuses, strict=True):
                    if found is not None and found.decode() == status:
                        if offset <= total < offset + limit:
                            ids.append(cid)
                        total += 1
        with self.r.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hget(self._key(f"c:{cid}"), "data")
            datas = pipe.execute()
        kept = [(cid, d) for cid, d in zip(ids, datas, strict=True) if d is not None]
        events = self._events([cid for cid, _ in kept])
        return [apply_events(json.loads(d), ev) for (_, d), ev in zip(kept, events, strict=True)], total

    @staticmethod
    def _chunks(items: list[Any]) -> Iterator[list[Any]]:
        for start in range(0, len(items), _CHUNK):
            yield items[start:start + _CHUNK]

    def journal(self, *, call_id: str | None = None, path: str | None = None, kinds: tuple[str, ...] | None = None,
                since: float | None = None, after_seq: int | None = None, limit: int = 1000) -> list[JsonDict]:
        """Journal entries in arrival order, filtered; each carries its ``seq``. Filters other than the
        call id are applied here, a chunk of entries at a time."""
        floor = after_seq + 1 if after_seq is not None else 0
        if call_id is not None:
            candidates: Iterator[list[int]] = self._chunks(
                [s for s in (int(x) for x in self.r.lrange(self._key(f"jc:{call_id}"), 0, -1)) if s >= floor])
        else:
            low = int(self.r.get(self._key("jlow")) or 1)
            high = int(self.r.get(self._key("jseq")) or 0)
            candidates = (list(range(s, min(s + _CHUNK, high + 1))) for s in range(max(low, floor), high + 1, _CHUNK))
        out: list[JsonDict] = []
        for seqs in candidates:
            for seq, raw in zip(seqs, self.r.hmget(self._key("j"), seqs), strict=True):
                if raw is None:
                    continue
                entry = json.loads(raw)
                if ((kinds and entry.get("kind") not in kinds) or (path is not None and entry.get("path") != path)
                        or (since is not None and entry.get("time", 0) < since)):
                    continue
                out.append({"seq": seq, **entry})
                if len(out) >= limit:
                    return out
        return out

    def counters(self) -> dict[str, int]:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key("counters"))
            pipe.get(self._key("jlow"))
            pipe.get(self._key("jseq"))
            pipe.zcard(self._key("calls"))
            stored, low, high, calls = pipe.execute()
        counts = {name: 0 for name in ("journal_evicted", "calls_evicted", "journal_bytes", "calls_bytes")}
        counts.update({k.decode(): int(v) for k, v in stored.items()})
        counts["settings_version"] = self.shared.version()
        counts["draws_http"] = self.shared.draws()
        counts["journal_size"] = max(0, int(high or 0) - int(low or 1) + 1)
        counts["calls"] = int(calls)
        return counts


def _events_of(call_id: str, stored: list[bytes]) -> list[CallEvent]:
    """A call's lifecycle events as ``_run_apply`` stored them (``[time, event, status, detail, fields]``)."""
    return [CallEvent(call_id, *json.loads(raw)) for raw in stored]


def _encode_entry(entry: JsonDict | tuple[Any, ...]) -> tuple[str | None, bytes]:
    """(call id, JSON) of a journal entry: a dict from the HTTP side, or a SIP row (``sip_journal_row``)
    turned into the dict the SQLite store gives back for it."""
    if not isinstance(entry, tuple):
        return entry.get("call_id"), jsonio.dumps(entry)
    row = dict(zip(SIP_JOURNAL_COLUMNS, entry, strict=True))
    extra = row.pop("extra")
    row["raw_bytes"] = len(row["raw"].encode())
    if extra:
        row.update(json.loads(extra))
    return row["call_id"], jsonio.dumps(row)

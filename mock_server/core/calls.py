"""Building call objects and moving them through their lifecycle."""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from mock_server.core import contracts, entropy

JsonDict = dict[str, Any]
FAILED_MESSAGE = "Synthflow service outage (simulated by synthflow-mock): the call could not be registered."
"""The ``error_message`` of a call prepared with the failed (outage) outcome."""
ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""Statuses a call reaches when it is over (the post-call webhook goes out; its limit slots are released)."""


class IdSource:
    """Fresh call ids in Synthflow's form (version-4 UUIDs); reproducible, and wholly random, when seeded.

    An unseeded id's last group (12 hex digits, 48 bits) is the time in milliseconds and the other 74 bits
    are random. The store indexes ids by that group first (``store.id_match``), so a new call's index
    entries go next to the last call's instead of onto a random page: each random page costs a 4 KiB page
    write when it is added and again when it is evicted. README, "Decisions"; bench/store_ids.py measures it.

    A seeded id is a hash of the seed and its number in a sequence. ``numbers`` gives those numbers: the
    store's shared sequence, so that every worker process mints a different id (each worker seeding its
    own generator gave every worker the same ids, and every second prepare a 503) and the n-th prepare
    gets the same id whichever worker answers it. Without ``numbers``, this source counts by itself.
    """

    def __init__(self, seed: int | None = None, numbers: Callable[[], int] | None = None) -> None:
        self._seed = seed
        self._numbers = numbers or itertools.count(1).__next__

    def new(self) -> str:
        if self._seed is None:
            # Formatted from bytes, without building a UUID object: this runs once per prepared call.
            h = bytearray(entropy.random_bytes(10))
            h[6] = (h[6] & 0x0F) | 0x40
            h[8] = (h[8] & 0x3F) | 0x80
            x = h.hex()
            return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{time.time_ns() // 1_000_000:012x}"
        digest = hashlib.blake2b(f"{self._seed}:call-id:{self._numbers()}".encode(), digest_size=16).digest()
        return str(uuid.UUID(bytes=digest, version=4))


@cache
def _template_parts() -> tuple[JsonDict, tuple[tuple[str, type], ...]]:
    template = contracts.call_template()
    containers = tuple((k, type(v)) for k, v in template.items() if isinstance(v, (list, dict)))
    return template, containers


def _fresh_template() -> JsonDict:
    """A copy of the schema's defaults; only the (empty) containers need fresh objects."""
    template, containers = _template_parts()
    call = dict(template)
    for key, kind in containers:
        call[key] = kind()
    return call


def new_call(body: JsonDict, call_id: str, now_ms: int, *, error_message: str | None = None) -> JsonDict:
    """The call object prepare_inbound answers, from the request body and the chosen outcome."""
    call = _fresh_template()
    call["synthflow_call_id"] = call_id
    call["call_status"] = "failed" if error_message else "registered"
    call["model_id"] = body["model_id"]
    call["workspace_id"] = body.get("workspace_id")
    call["custom_variables"] = dict(body.get("custom_variables") or {})
    call["lead_phone_number"] = body["from_number"]
    call["agent_phone_number"] = body["to_number"]
    call["start_time"] = now_ms
    call["error_message"] = error_message
    call["timeline"] = [{"event": "failed" if error_message else "prepared", "time": now_ms}]
    return call


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One step of a call's life after prepare: a timeline entry, maybe a new status, maybe field values."""

    call_id: str
    time: int
    event: str
    status: str | None = None
    detail: JsonDict | None = None
    fields: JsonDict | None = None


def apply_events(call: JsonDict, events: list[CallEvent]) -> JsonDict:
    """Fold lifecycle events into a call object (in place) and return it."""
    for e in events:
        entry: JsonDict = {"event": e.event, "time": e.time}
        if e.detail:
            entry["detail"] = e.detail
        call["timeline"].append(entry)
        if e.status is not None:
            call["call_status"] = e.status
        if e.fields:
            call.update(e.fields)
    return call

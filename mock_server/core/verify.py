"""``POST /_mock/verify``: count journal entries (HTTP and SIP) that match a pattern.

When nothing matches, the nearest entries come back with how each differs, as
WireMock's near-miss report does, so a failing test says what did arrive.
"""

from __future__ import annotations

from typing import Any

from mock_server.core.store import Store

EXACT = ("kind", "method", "path", "status", "call_id", "outcome", "direction", "transport", "decision", "event",
         "sip_call_id")
CONTAINS = {"reason_contains": "reason", "first_line_contains": "first_line", "body_contains": "body",
            "raw_contains": "raw"}
SUMMARY = ("seq", "time", "kind", "event", "attempt", "url", "method", "path", "status", "outcome", "reason",
           "call_id", "direction", "first_line", "decision")


def _derived(entry: dict[str, Any]) -> dict[str, Any]:
    """SIP entries get ``method`` or ``status`` from their first line, so one pattern fits both kinds."""
    if entry.get("kind") != "sip" or "first_line" not in entry:
        return entry
    first = (entry.get("first_line") or "").split(" ")
    out = dict(entry)
    if first and first[0].startswith("SIP/") and len(first) > 1 and first[1].isdigit():
        out["status"] = int(first[1])
    elif first:
        out["method"] = first[0]
    return out


def _differences(entry: dict[str, Any], pattern: dict[str, Any]) -> list[str]:
    diffs = []
    for key in EXACT:
        if key in pattern and entry.get(key) != pattern[key]:
            diffs.append(f"{key}: expected {pattern[key]!r}, got {entry.get(key)!r}")
    for key, field in CONTAINS.items():
        if key in pattern and str(pattern[key]) not in str(entry.get(field) or ""):
            diffs.append(f"{field}: does not contain {pattern[key]!r}")
    for name, value in (pattern.get("headers") or {}).items():
        got = (entry.get("headers") or {}).get(name.lower())
        if got != value:
            diffs.append(f"header {name}: expected {value!r}, got {got!r}")
    return diffs


def _count_ok(count: dict[str, int], matched: int) -> bool:
    if "eq" in count and matched != count["eq"]:
        return False
    if "min" in count and matched < count["min"]:
        return False
    return not ("max" in count and matched > count["max"])


def run(store: Store, pattern: dict[str, Any]) -> dict[str, Any]:
    """``pattern`` has passed ``contracts/admin-verify.schema.json`` (the handler checks it)."""
    count = {k: int(v) for k, v in (pattern.get("count") or {"min": 1}).items()}
    kinds = (pattern["kind"],) if "kind" in pattern else ("http", "sip")
    entries = [_derived(e) for e in store.journal(kinds=kinds, since=pattern.get("since"),
                                                   call_id=pattern.get("call_id"),
                                                   limit=int(pattern.get("limit", 100_000)))]
    # near misses for a call that has no entry at all come from everything recent instead
    pool = entries or ([_derived(e) for e in store.journal(kinds=kinds, limit=1000)] if "call_id" in pattern else [])
    scored = [(len(_differences(e, pattern)), e) for e in entries]
    matched = [e for diffs, e in scored if diffs == 0]
    result: dict[str, Any] = {
        "matched": len(matched),
        "count": count,
        "ok": _count_ok(count, len(matched)),
        "entries": [{k: e.get(k) for k in SUMMARY if k in e} for e in matched[:50]],
    }
    if not matched:
        near = sorted(((len(_differences(e, pattern)), e) for e in pool), key=lambda pair: (pair[0], -pair[1]["seq"]))
        result["near_misses"] = [
            {"entry": {k: e.get(k) for k in SUMMARY if k in e}, "differences": _differences(e, pattern)}
            for _, e in near[:3]
        ]
    return result

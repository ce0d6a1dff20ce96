"""Handlers for the mock's own admin API under ``/_mock/``: health, calls, journal, scenarios, policy, verify."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from mock_server import __version__, metrics
from mock_server import ui as web_ui
from mock_server.agents.book import masked
from mock_server.core import calls, checks, contracts, outcomes, verify
from mock_server.core.errors import ApiError
from mock_server.core.exchange import Request, Response, Result
from mock_server.ladder import model as ladder_model

if TYPE_CHECKING:
    from mock_server.core.backend import Backend

JOURNAL_KINDS = ("http", "sip", "admin", "webhook")


def health(backend: Backend, request: Request) -> Result:
    """``ok``, or ``degraded`` with the cause when this HTTP worker or the SIP process cannot record."""
    try:
        sip_cause = backend.store.shared.status()
    except Exception as exc:  # a Redis store keeps it in Redis: unreadable while Redis is away
        sip_cause = f"its status cannot be read from the store ({type(exc).__name__}: {exc})"
    http = backend.health.report()
    degraded = not http["ok"] or sip_cause is not None
    body = {"status": "degraded" if degraded else "ok", "version": __version__,
            "uptime_s": round(time.time() - backend.started, 3),
            "http": http, "sip": {"ok": sip_cause is None, "cause": sip_cause}}
    try:
        body["store"] = backend.store.counters()
    except Exception as exc:  # health answers even when the store cannot be read
        body["store"] = {"error": f"{type(exc).__name__}: {exc}"}
        body["status"] = "degraded"
    return Result(Response(200, body))


def list_calls(backend: Backend, request: Request) -> Result:
    limit = checks.int_arg(request, "limit", 100, 1, 10_000)
    offset = checks.int_arg(request, "offset", 0, 0, 10**9)
    found, total = backend.store.list_calls(status=request.query.get("status"), limit=limit, offset=offset)
    evicted = backend.store.counters()["calls_evicted"]
    return Result(Response(200, {"calls": found, "total": total, "evicted": evicted}))


def sip_ladder(backend: Backend, request: Request, call_id: str) -> Result:
    """One call's SIP messages in order: the ladder Synthflow's console draws."""
    entries = backend.store.journal(call_id=call_id, kinds=("sip",), limit=10_000)
    ladder = [{k: e.get(k) for k in ("seq", "time", "direction", "transport", "local", "remote", "first_line",
                                     "sip_call_id", "decision", "reason", "raw")} for e in entries]
    call = backend.store.get_call(call_id)
    body = {"call_id": call_id, "call_status": call["call_status"] if call else None, "messages": ladder}
    return Result(Response(200 if call or ladder else 404, body))


def call_ladder(backend: Backend, request: Request, call_id: str) -> Result:
    """One call as a sequence diagram's steps (the prepare, SIP, webhooks): what the web page and
    ``synthflow-mock ladder`` draw."""
    entries = backend.store.journal(call_id=call_id, kinds=("http", "sip", "webhook"), limit=10_000)
    call = backend.store.get_call(call_id)
    return Result(Response(200 if call or entries else 404, ladder_model.build(call_id, entries, call)))


UI_SECURITY = {
    "Content-Type": "text/html; charset=utf-8",
    # Everything the page needs is inline or from this mock: nothing is fetched from elsewhere.
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def recording(backend: Backend, request: Request, name: str) -> Result:
    """A call's recording of the caller's audio (``recording_url`` in the call object), as WAV."""
    from mock_server.media.manager import RECORDING_NAME, recordings_dir

    if not RECORDING_NAME.match(name):
        raise ApiError(404, "not_found", f"{name!r} is not a recording name (<call_id>.wav)", field="name")
    try:
        with open(os.path.join(recordings_dir(backend.config), name), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"No recording {name}: the call had no caller audio, or has not ended",
                       field="name") from None
    return Result(Response(200, data, {"Content-Type": "audio/wav"}))


def call_pcap(backend: Backend, request: Request, call_id: str) -> Result:
    """One call's SIP messages and RTP packets as a pcap (synthesized IP/UDP headers, recorded times)."""
    from mock_server.media import pcap
    from mock_server.media.manager import RECORDING_NAME, recordings_dir

    packets = []
    for e in backend.store.journal(call_id=call_id, kinds=("sip",), limit=10_000):
        if not e.get("raw") or not e.get("local") or not e.get("remote"):
            continue
        local, remote = pcap.parse_address(e["local"]), pcap.parse_address(e["remote"])
        src, dst = (remote, local) if e.get("direction") == "in" else (local, remote)
        packets.append((e["time"], src, dst, e["raw"].encode()))
    if not packets:
        raise ApiError(404, "not_found", f"No SIP messages for call {call_id!r}", field="call_id")
    rtp_file = os.path.join(recordings_dir(backend.config), f"{call_id}.rtp.pcap")
    if RECORDING_NAME.match(f"{call_id}.wav") and os.path.exists(rtp_file):
        with open(rtp_file, "rb") as f:
            packets += list(pcap.read_udp(f.read()))
    return Result(Response(200, pcap.write(packets), {
        "Content-Type": "application/vnd.tcpdump.pcap",
        "Content-Disposition": f'attachment; filename="call-{call_id}.pcap"'}))


def ui(backend: Backend, request: Request) -> Result:
    """The web ladder: a static page; the calls and ladders it shows come from the admin API (token-guarded)."""
    return Result(Response(200, web_ui.page(), dict(UI_SECURITY)))


def ui_redirect(backend: Backend, request: Request) -> Result:
    return Result(Response(302, b"", {"Location": "/_mock/ui", "Content-Type": "text/plain"}))


def agents(backend: Backend, request: Request) -> Result:
    """The agents document (webhooks, pre-call actions, limits): PUT replaces it, {} clears it.
    Secrets are never echoed back; live calls per limit are shown beside it."""
    if request.method == "PUT":
        document = checks.json_body(backend.config, request)
        checks.contract(backend.validator("agents.schema.json"), document)
        backend.store.set_agents(document or None)
    return Result(Response(200, {"agents": masked(backend.store.agents_document()),
                                 "live_calls": backend.store.live_counts()}))


def journal(backend: Backend, request: Request) -> Result:
    q = request.query
    kinds = tuple(k for k in q.get("kind", "http,sip").split(",") if k)
    if not kinds or set(kinds) - set(JOURNAL_KINDS):
        raise ApiError(400, "validation_error", f"kind must be a comma-separated subset of {','.join(JOURNAL_KINDS)}",
                       field="kind")
    entries = backend.store.journal(
        call_id=q.get("call_id"), path=q.get("path"), kinds=kinds, since=checks.float_arg(request, "since"),
        after_seq=checks.int_arg(request, "after", None, 0, 2**62),
        limit=checks.int_arg(request, "limit", 1000, 1, 100_000),
    )
    counters = backend.store.counters()
    body = {"entries": entries, "size": counters["journal_size"], "limit": backend.store.journal_limit,
            "evicted": counters["journal_evicted"]}
    return Result(Response(200, body))


def prepare_bulk(backend: Backend, request: Request) -> Result:
    """Prepare ``count`` calls from one body in one go (load tests pre-register ids this way).

    Body: ``{"count": N, "body": {...prepare_inbound body...}, "outcome": "registered"}``. The
    inner body is validated against the same contract; each call is journaled as a prepare.
    """
    spec = checks.json_body(backend.config, request)
    checks.contract(backend.validator("admin-prepare-bulk.schema.json"), spec)
    body = spec["body"]
    checks.contract(backend.request_validator, body)  # again with --allow-extra-fields applied
    outcome = spec.get("outcome", "registered")
    now_ms = int(time.time() * 1000)
    message = calls.FAILED_MESSAGE if outcome == "failed" else None
    count = int(spec["count"])  # JSON Schema's integer includes 247.0
    new_calls = [calls.new_call(body, backend.ids.new(), now_ms, error_message=message) for _ in range(count)]
    backend.store.add_calls(new_calls, {"time": time.time(), "kind": "admin", "path": "/_mock/prepare_bulk",
                                        "method": "POST", "outcome": outcome, "reason": "bulk",
                                        "status": 200, "count": len(new_calls)})
    return Result(Response(200, {"call_ids": [c["synthflow_call_id"] for c in new_calls]}))


def scenarios(backend: Backend, request: Request) -> Result:
    """Queue "the next N requests matching M get outcome X" (consumed once each), list or clear them."""
    store = backend.store
    if request.method == "GET":
        return Result(Response(200, {"scenarios": store.scenarios()}))
    if request.method == "DELETE":
        checks.object_body(backend.config, request)
        store.clear_scenarios()
        return Result(Response(200, {"cleared": True}))
    spec = checks.json_body(backend.config, request)
    checks.contract(backend.validator("admin-scenario.schema.json"), spec)
    match = spec.pop("match", {})
    times = int(spec.pop("times", 1))  # JSON Schema's integer includes 3.0
    outcomes.from_spec(spec, "check", "scenario", outcomes.Decision())  # raises on unknown names
    limit = backend.config.scenarios_limit
    if store.settings_state()[1] >= limit:
        raise ApiError(429, "rate_limited", f"{limit} scenarios are queued already (--scenarios-limit); "
                       "let some be used, or DELETE /_mock/scenarios", field="/")
    scenario_id = store.add_scenario(match, spec, times)
    return Result(Response(201, {"id": scenario_id, "match": match, "times": times, **spec}))


def policy(backend: Backend, request: Request) -> Result:
    """The seeded global policy: outcome rates and latency distributions (PUT replaces, {} clears)."""
    if request.method == "PUT":
        document = checks.json_body(backend.config, request)
        checks.contract(backend.validator("admin-policy.schema.json"), document)
        backend.store.set_policy(outcomes.validate_policy(document) if document else None)
    return Result(Response(200, {"policy": backend.store.policy()}))


def verify_journal(backend: Backend, request: Request) -> Result:
    """Count journal entries matching a pattern; when none match, say how the nearest ones differ."""
    pattern = checks.json_body(backend.config, request)
    checks.contract(backend.validator("admin-verify.schema.json"), pattern)
    return Result(Response(200, verify.run(backend.store, pattern)))


def prometheus(backend: Backend, request: Request) -> Result:
    """Prometheus text: every process's counters and histograms, and the store's sizes and evictions."""
    body = metrics.render(backend.store.counters())
    return Result(Response(200, body, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}))


def openapi(backend: Backend, request: Request) -> Result:
    return Result(Response(200, contracts.openapi_bundle("admin-openapi.json")))


def reset(backend: Backend, request: Request) -> Result:
    checks.object_body(backend.config, request)
    backend.store.reset()
    return Result(Response(200, {"reset": True}))

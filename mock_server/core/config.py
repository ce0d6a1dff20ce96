"""Settings shared by every door; the CLI, the pytest plugin and tests build one of these."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MockConfig:
    """What the mock accepts and how it answers. Defaults are the documented decisions in the README."""

    tokens: tuple[str, ...] = ()
    """Accepted API tokens; empty means any non-empty bearer token is accepted."""
    admin_token: str | None = None
    """When set, ``/_mock/*`` needs ``X-Mock-Admin-Token``. Required when bound beyond loopback."""
    allowed_hosts: tuple[str, ...] | None = None
    """Names the ``Host`` header of an admin request may carry; None (in-process doors) checks nothing.
    ``serve`` sets the bound address, localhost and the loopback addresses, plus ``--allowed-host``."""
    allow_extra_fields: bool = False
    """Accept unknown top-level fields in the prepare_inbound body instead of answering 422."""
    max_body_bytes: int = 64 * 1024
    failed_status: int = 200
    """HTTP status of the 'failed' (service outage) answer: 200 (the call object says failed) or 503."""
    default_outcome: str = "registered"
    """Outcome when no request asks for another: 'registered' or 'failed' (``--outcome failed``)."""
    seed: int | None = None
    """Makes call ids reproducible."""
    policy: dict[str, Any] | None = None
    """Initial seeded global policy (outcome rates, latencies); see mock_server.core.outcomes."""
    scenarios: tuple[dict[str, Any], ...] = ()
    """Scenarios queued when the server starts (the config file's ``[[scenarios]]``), as for POST /_mock/scenarios."""
    scenarios_limit: int = 1_000
    """Queued scenarios with uses left, at most; each prepare reads them all."""
    redaction_salt: str = field(default_factory=lambda: os.urandom(8).hex(), compare=False, repr=False)
    """Salts the fingerprints that stand for credentials in the journal; one per server, shared by its
    processes (it travels with the config)."""
    journal_limit: int = 10_000
    calls_limit: int = 100_000
    journal_max_bytes: int = 256 * 2**20
    """The journal's text (entries and raw SIP messages) in bytes, at most; the oldest go first."""
    calls_max_bytes: int = 256 * 2**20
    """The prepared calls' JSON in bytes, at most; the oldest go first."""
    journal_body_limit: int = 8 * 1024
    """Bytes of each request body kept in the journal; longer bodies are cut and marked."""
    store_path: str = ":memory:"
    sip_host: str = "127.0.0.1"
    sip_port: int = 32681
    sip_tls_port: int | None = None
    sip_tls_cert: str | None = None
    sip_tls_key: str | None = None
    sip_t1_ms: int = 500
    """RFC 3261 T1; T2 = 8·T1 and T4 = 10·T1 as in the RFC's defaults. Tests shrink it."""
    sip_ring_ms: int = 0
    """Time between 100 Trying and 180 Ringing."""
    sip_answer_ms: int = 0
    """Time between 180 Ringing and 200 OK."""
    sip_require_xei: bool = False
    """Answer an INVITE without X-EI with 400 instead of accepting it as a direct dial."""
    sip_xei_lenient: bool = False
    """Accept forgivable X-EI mistakes (missing final ';', lowercase prefix) with a warning."""
    sip_codes: dict[str, int] = field(default_factory=dict)
    """Overrides of the final codes in ``mock_server.sip.admission.DEFAULT_CODES``."""
    sip_max_message_bytes: int = 65_535
    sip_flush_ms: int = 10
    """SIP journal entries and call state changes are written in batches at most this long after they happen."""
    sip_max_transactions: int = 20_000
    """INVITE transactions in progress (not yet answered) at most; beyond it INVITEs get a stateless 503
    with Retry-After. Answered ones are released on time (Timers H, I, L), so they need no cap."""
    gc_full_s: float = 600.0
    """Each server process (SIP, HTTP workers) runs a full garbage collection when idle, or after this long at
    the latest (0: Python's own schedule, which paused the SIP process 0.1-0.4 s every two seconds under load;
    ``server/collector.py``)."""
    sip_workers: int = 1
    """SIP processes (shards) sharing the SIP ports with SO_REUSEPORT; each has its own journal writer."""
    sip_shard: int = 0
    """Which shard this SIP process is (set by ``serve`` for each; answers carry X-Mock-Shard when sharded)."""
    sip_shard_dir: str | None = None
    """Where the shards' routing sockets live (made by ``serve`` when sharded; ``sip/shard_routing.py``)."""
    sip_tcp_idle_s: float = 60.0
    """A TCP/TLS connection that sends nothing (or half a message) for this long is closed."""
    log_format: str = "text"
    """Console lines: ``text`` for people, ``json`` for tools."""
    quiet: bool = False
    """No console line per request or call; problems are still printed."""
    tls_cert: str | None = None
    """PEM certificate: the HTTP API is served over HTTPS (with ``tls_key``)."""
    tls_key: str | None = None
    http_header_timeout_s: float = 10.0
    """A request's headers must arrive within this long of its first byte, or it gets 408."""
    http_body_timeout_s: float = 10.0
    """A request's body must arrive within this long of its headers, or it gets 408."""
    http_idle_timeout_s: float = 75.0
    """A keep-alive connection with no request for this long is closed."""
    http_max_header_bytes: int = 64 * 1024
    """A request whose line and headers are not complete within this many bytes gets 414 (the URL) or 431."""
    media: bool = True
    """RTP for every answered call (the agent's greeting out, the caller's audio recorded); off for pure
    signalling load."""
    rtp_port_min: int = 10000
    rtp_port_max: int = 60000
    """The RTP ports the mock answers with (Synthflow's media range is UDP 10000-60000)."""
    agent_audio: str | None = None
    """A WAV file the agent plays instead of the shipped greeting (any common rate, converted)."""
    media_dir: str | None = None
    """Where recordings are written; none: beside the store file (or a temporary directory)."""
    rtp_timeout_s: float | None = None
    """Hang up a call whose caller has sent no RTP for this long (a plan's ``rtp-timeout-s`` wins)."""
    transfer_to: str = "sip:+15550009999@transfer.synthflow-mock.invalid"
    """Where the transfer plan REFERs the caller (an agent's ``transfer.to`` in --agents wins)."""
    transfer_headers: dict[str, str] = field(default_factory=dict)
    """X-headers the REFER carries (values may use ``<call_id>`` and ``{X-Header}`` placeholders)."""
    agents: dict[str, Any] | None = None
    """The agents document (``contracts/agents.schema.json``: webhooks, pre-call actions, limits), from
    ``--agents FILE``; installed when the server starts. ``PUT /_mock/agents`` replaces it at run time."""
    webhook_retries: int = 3
    """A post-call webhook that gets no 2xx is sent again up to this many times."""
    webhook_backoff_s: float = 1.0
    """Wait before the first retry; each later retry waits twice as long as the one before."""
    webhook_timeout_s: float = 10.0
    """Each post-call webhook attempt waits this long for an answer."""
    inbound_disconnect_code: int = 603
    """SIP final code when the inbound webhook disconnects the call (answers ``{}``)."""
    limit_sip_code: int = 503
    """SIP final code for an INVITE over a concurrency limit (with Retry-After)."""
    limit_hold_s: float = 60.0
    """A prepared call holds its concurrency slot this long waiting for its INVITE; the INVITE keeps it
    until the call ends."""


CONFIG_ENV = "SYNTHFLOW_MOCK_CHILD_CONFIG_JSON"
"""The environment variable through which ``serve`` hands its configuration to child processes."""


def to_json(config: MockConfig) -> str:
    """Serialise for handing to worker processes (environment variable)."""
    return json.dumps(dataclasses.asdict(config))


def from_json(text: str) -> MockConfig:
    data = json.loads(text)
    data["tokens"] = tuple(data.get("tokens", ()))
    data["scenarios"] = tuple(data.get("scenarios", ()))
    if data.get("allowed_hosts") is not None:
        data["allowed_hosts"] = tuple(data["allowed_hosts"])
    return MockConfig(**data)


def config_from_env() -> MockConfig:
    """The configuration a child process was started with, or the defaults."""
    raw = os.environ.get(CONFIG_ENV)
    return from_json(raw) if raw else MockConfig()


def config_from_values(values: dict[str, Any]) -> MockConfig:
    """A config from any mapping whose keys are field names (parsed arguments, say); other keys are ignored."""
    names = {f.name for f in dataclasses.fields(MockConfig)}
    return MockConfig(**{k: v for k, v in values.items() if k in names})

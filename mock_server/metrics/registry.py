"""The metrics, and the one function that renders them for a scrape."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

_pid = os.getpid()


def _this_pid() -> int:
    """This process's id, as the multiprocess values name their files by it. Theirs calls ``os.getpid()``, a
    system call, on every increment (three per HTTP request); this one is kept, and renewed in a forked child."""
    return _pid


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before any value below exists
    values.ValueClass = values.MultiProcessValue(process_identifier=_this_pid)

HTTP_REQUESTS = Counter("synthflow_mock_http_requests", "HTTP requests answered",
                        ["route", "method", "status", "outcome", "source"])
HTTP_DURATION = Histogram("synthflow_mock_http_request_duration_seconds",
                          "From a request's first byte to its answer (delays included)", ["route"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SIP_REQUESTS = Counter("synthflow_mock_sip_requests", "SIP requests received (not retransmissions)", ["method"])
SIP_RESPONSES = Counter("synthflow_mock_sip_responses", "SIP responses sent (not retransmissions)", ["code"])
SIP_RETRANSMISSIONS = Counter("synthflow_mock_sip_retransmissions", "SIP retransmissions, received or sent",
                              ["direction"])
SIP_REFUSED = Counter("synthflow_mock_sip_refused", "INVITEs refused without keeping a transaction", ["reason"])
SIP_ROUTED = Counter("synthflow_mock_sip_routed", "SIP messages handed to the shard holding their dialog or "
                     "transaction", ["kind"])
GC_FULL = Counter("synthflow_mock_gc_full_collections", "Full garbage collections run by the server's own "
                  "schedule (server/collector.py): when idle, or when due", ["why"])
SIP_LIVE_DIALOGS = Gauge("synthflow_mock_sip_live_dialogs", "SIP dialogs open now", multiprocess_mode="livesum")
WEBHOOK_ATTEMPTS = Counter("synthflow_mock_webhook_attempts", "Webhook and pre-call action attempts",
                           ["event", "outcome"])
WEBHOOK_DURATION = Histogram("synthflow_mock_webhook_duration_seconds", "From sending a webhook to its answer",
                             ["event"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RTP_PACKETS = Counter("synthflow_mock_rtp_packets", "RTP packets of ended calls", ["direction"])
"""Added when a call's media ends (one update per call, not per packet)."""
RTP_LOST = Counter("synthflow_mock_rtp_lost", "Caller RTP packets lost (RFC 3550 count) in ended calls")
DTMF_DIGITS = Counter("synthflow_mock_dtmf_digits", "DTMF digits heard", ["via"])


_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}
_CHILDREN_CAP = 4096
"""Label sets remembered by :func:`labeled`; past this many (a client inventing HTTP methods), it asks again."""


def labeled(metric: Any, *label_values: str) -> Any:
    """``metric.labels(*label_values)``, remembered. ``labels()`` checks its arguments and takes a lock on every
    call (1.5 µs), and a hot path asks for the same few label sets again and again."""
    key = (metric, label_values)
    child = _CHILDREN.get(key)
    if child is None:
        child = metric.labels(*label_values)
        if len(_CHILDREN) < _CHILDREN_CAP:
            _CHILDREN[key] = child
    return child


def source_of(reason: str | None) -> str:
    """The kind of source that decided an outcome: header, scenario, magic-number, seeded, server-default."""
    if not reason:
        return "none"
    return reason.split(";", 1)[0].split(":", 1)[0]


class _StoreCollector:
    """Gauges read from the store at scrape time: its sizes and what its bounds evicted."""

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Any]:
        for name, help_text in (("journal_evicted", "Journal entries evicted by its bounds"),
                                ("calls_evicted", "Prepared calls evicted by their bounds"),
                                ("journal_size", "Journal entries kept"), ("calls", "Prepared calls kept")):
            if name in self.counters:
                yield GaugeMetricFamily(f"synthflow_mock_store_{name}", help_text, value=self.counters[name])


def render(store_counters: dict[str, int]) -> bytes:
    """The Prometheus text for a scrape: every process's metrics, and the store's gauges."""
    store = CollectorRegistry()
    store.register(_StoreCollector(store_counters))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        return generate_latest(processes) + generate_latest(store)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY) + generate_latest(store)

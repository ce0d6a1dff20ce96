"""Prometheus metrics for load-test users: what the mock saw and answered, from every process.

``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before its children start, so
each HTTP worker and the SIP process write their counters there and ``/_mock/metrics`` (served
by any worker) adds them all up (prometheus-client's multiprocess mode). In one process (the
in-process door, a test) the same metrics live in the process's own registry.
"""

from mock_server.metrics.registry import (
    DTMF_DIGITS,
    GC_FULL,
    HTTP_DURATION,
    HTTP_REQUESTS,
    RTP_LOST,
    RTP_PACKETS,
    SIP_LIVE_DIALOGS,
    SIP_REFUSED,
    SIP_REQUESTS,
    SIP_RESPONSES,
    SIP_RETRANSMISSIONS,
    SIP_ROUTED,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DURATION,
    labeled,
    render,
    source_of,
)

__all__ = ["DTMF_DIGITS", "GC_FULL", "HTTP_DURATION", "HTTP_REQUESTS", "RTP_LOST", "RTP_PACKETS", "SIP_LIVE_DIALOGS",
           "SIP_REFUSED", "SIP_REQUESTS", "SIP_RESPONSES", "SIP_RETRANSMISSIONS", "SIP_ROUTED", "WEBHOOK_ATTEMPTS",
           "WEBHOOK_DURATION", "labeled", "render", "source_of"]

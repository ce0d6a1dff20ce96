"""The mock's side of a load test: its counters from /_mock/metrics, summed up at the end of a run."""

from __future__ import annotations

import collections
import json
import os
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families


def fetch(host: str) -> dict[str, Any]:
    """Outcomes, HTTP statuses, SIP answers by code, retransmissions and errors the mock counted."""
    headers = {}
    if os.environ.get("SYNTHFLOW_MOCK_ADMIN_TOKEN"):
        headers["X-Mock-Admin-Token"] = os.environ["SYNTHFLOW_MOCK_ADMIN_TOKEN"]
    text = requests.get(f"{host.rstrip('/')}/_mock/metrics", headers=headers, timeout=10).text
    out: dict[str, Any] = {"outcomes": collections.Counter(), "http_status": collections.Counter(),
                           "sip_responses": collections.Counter(), "retransmissions": collections.Counter(),
                           "errors": 0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "synthflow_mock_http_requests_total" and s.labels.get("route", "").startswith("/v2/"):
                out["outcomes"][s.labels["outcome"]] += int(s.value)
                out["http_status"][s.labels["status"]] += int(s.value)
                if s.labels["status"].startswith("5") and s.labels["outcome"] == "none":
                    out["errors"] += int(s.value)  # a 5xx no outcome asked for: the mock's own failure
            elif s.name == "synthflow_mock_sip_responses_total":
                out["sip_responses"][s.labels["code"]] += int(s.value)
            elif s.name == "synthflow_mock_sip_retransmissions_total":
                out["retransmissions"][s.labels["direction"]] += int(s.value)
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in out.items()}


def report(host: str, csv_prefix: str | None) -> str:
    """One block of text for the console; the same as JSON beside Locust's CSV files when there are some."""
    try:
        counters = fetch(host)
    except (requests.RequestException, ValueError) as exc:
        return f"synthflow-mock counters: not read from {host} ({exc})"
    if csv_prefix:
        with open(f"{csv_prefix}_mock.json", "w") as f:
            json.dump(counters, f, indent=2)
    lines = ["synthflow-mock counters (the mock's side of this run):"]
    for key in ("outcomes", "http_status", "sip_responses", "retransmissions"):
        value = counters[key]
        lines.append(f"  {key:<16} " + (", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"))
    lines.append(f"  {'errors':<16} {counters['errors']}")
    return "\n".join(lines)

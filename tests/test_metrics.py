"""/_mock/metrics: Prometheus text from every process (two HTTP workers and the SIP process), parsed with
prometheus_client's own parser, with counts that match the journal after a known mix."""

from __future__ import annotations

import collections
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mock_server.sip.client import SipCaller
from mock_server.testing import start_server
from tests.data import AUTH, VALID_BODY

pytestmark = pytest.mark.live


def samples(url: str) -> dict[str, list]:
    text = requests.get(f"{url}/_mock/metrics", timeout=5).text
    out = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append(sample)
    return out


def total(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_from_every_process_match_the_journal():
    server = start_server("--workers", "2", "--sip-t1-ms", "100")
    try:
        url = server.url
        ids, workers = [], set()
        while len(ids) < 12 or (len(workers) < 2 and len(ids) < 300):  # the kernel picks the worker
            resp = requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5)
            ids.append(resp.json()["synthflow_call_id"])
            workers.add(resp.headers["X-Mock-Worker"])
        for _ in range(3):
            assert requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, timeout=5).status_code == 401
        for _ in range(2):
            requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, headers={**AUTH, "Prefer":
                          "outcome=server_error"}, timeout=5)
        caller = SipCaller("127.0.0.1", server.sip_port, t1=0.1)
        for call_id in ids[:3]:
            assert caller.call(f"sip:+15551234567@127.0.0.1:{server.sip_port}", [("X-EI", f"S.{call_id};")],
                               hold_s=0.05).answered
        caller.call(f"sip:+15551234567@127.0.0.1:{server.sip_port}", [("X-EI", "S.not-prepared;")], hold_s=0)
        time.sleep(0.5)
        assert len(workers) == 2, "the requests did not reach both workers"
        found = samples(url)
        route = "/v2/prepare_inbound"
        assert total(found, "synthflow_mock_http_requests_total", route=route, status="200",
                     outcome="registered", source="server-default") == len(ids)
        assert total(found, "synthflow_mock_http_requests_total", route=route, status="401") == 3
        assert total(found, "synthflow_mock_http_requests_total", route=route, status="500",
                     outcome="server_error", source="header") == 2
        assert total(found, "synthflow_mock_http_request_duration_seconds_count", route=route) == len(ids) + 5
        journal = requests.get(f"{url}/_mock/journal", params={"kind": "sip", "limit": 10_000}, timeout=5).json()
        sent = collections.Counter(e["first_line"][8:11] for e in journal["entries"]
                                   if e["direction"] == "out" and e["first_line"].startswith("SIP/2.0")
                                   and e.get("decision") != "retransmission")
        received = collections.Counter(e["first_line"].split(" ")[0] for e in journal["entries"]
                                       if e["direction"] == "in" and not e["first_line"].startswith("SIP/")
                                       and e.get("decision") != "retransmission")
        for code, count in sent.items():
            assert total(found, "synthflow_mock_sip_responses_total", code=code) == count, code
        for method, count in received.items():
            assert total(found, "synthflow_mock_sip_requests_total", method=method) == count, method
        assert sent["404"] == 1 and received["INVITE"] == 4 and received["BYE"] == 3
        assert total(found, "synthflow_mock_store_calls") == len(ids)  # the server_error answers made no call
        assert total(found, "synthflow_mock_sip_live_dialogs") == 0
        # each answered call's media, added when it ended: the agent spoke, the caller (no RTP) did not
        assert total(found, "synthflow_mock_rtp_packets_total", direction="out") >= 3
        assert total(found, "synthflow_mock_rtp_packets_total", direction="in") == 0
    finally:
        server.kill_group()

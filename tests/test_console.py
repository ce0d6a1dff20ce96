"""What serve prints: one line per HTTP request, SIP transaction and call event, in text and in JSON,
and nothing of its own readiness probe."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from mock_server.sip.client import SipCaller
from mock_server.testing import free_port, free_udp_tcp_port
from tests.data import AUTH, VALID_BODY

pytestmark = pytest.mark.live


def run_server(tmp_path, *flags: str):
    http, sip = free_port(), free_udp_tcp_port()
    log = open(tmp_path / "console.log", "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "serve", "--http-port", str(http), "--sip-port",
                             str(sip), "--sip-t1-ms", "100", *flags], stderr=log, start_new_session=True)
    deadline = time.monotonic() + 15
    while "ready" not in (tmp_path / "console.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{http}"

    def traffic() -> str:
        call_id = requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH, timeout=5).json()[
            "synthflow_call_id"]
        assert requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, timeout=5).status_code == 401
        assert requests.post(f"{url}/v2/prepare_inbound", json=VALID_BODY, headers={**AUTH, "Prefer":
                             "outcome=server_error"}, timeout=5).status_code == 500
        result = SipCaller("127.0.0.1", sip, t1=0.1).call(f"sip:+15551234567@127.0.0.1:{sip}",
                                                          [("X-EI", f"S.{call_id};")], hold_s=0.1)
        assert result.answered
        time.sleep(0.3)
        journal = requests.get(f"{url}/_mock/journal?kind=http,sip,admin", timeout=5).json()["entries"]
        assert journal[0]["path"] == "/v2/prepare_inbound"  # no readiness probe before the first request
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()
        return call_id

    return traffic


def test_text_lines_for_a_prepare_a_rejected_token_a_fault_and_a_call(tmp_path):
    call_id = run_server(tmp_path)()
    text = (tmp_path / "console.log").read_text()
    assert re.search(rf"http POST /v2/prepare_inbound 200 registered \(server-default\) call={call_id} [\d.]+ms", text)
    assert re.search(r"http POST /v2/prepare_inbound 401 \(unauthorized\)", text)
    assert re.search(r"http POST /v2/prepare_inbound 500 server_error \(header:Prefer\)", text)
    assert re.search(rf"call invite ringing call={call_id}", text)
    assert re.search(rf"sip  200 OK call={call_id}", text)
    assert re.search(rf"call bye completed \(human_ended_call\) call={call_id}", text)
    assert "OPTIONS" not in text and "/_mock/health" not in text and "Traceback" not in text
    assert "\033[" not in text  # no colour when not on a terminal


def test_json_lines_carry_the_same_fields(tmp_path):
    call_id = run_server(tmp_path, "--log-format", "json")()
    records = [json.loads(line) for line in (tmp_path / "console.log").read_text().splitlines()
               if line.startswith("{")]
    http = [r for r in records if r["kind"] == "http"]
    assert {"kind": "http", "what": "POST /v2/prepare_inbound", "status": 200, "call_id": call_id,
            "outcome": "registered", "reason": "server-default"}.items() <= http[0].items()
    assert http[0]["latency_ms"] >= 0 and http[1]["status"] == 401 and http[2]["status"] == 500
    assert any(r["kind"] == "call" and r["what"] == "bye" and r["status"] == "completed" for r in records)


def test_quiet_prints_no_request_lines(tmp_path):
    run_server(tmp_path, "--quiet")()
    lines = (tmp_path / "console.log").read_text().splitlines()
    assert not [line for line in lines if " http " in line or " call " in line]

"""The fault suite (issue #12): each finding of the attack run, reproduced, and what the mock does now.

Every test here would have caught the mock lying: a 2xx whose record was lost, a 500 HTML page, a
cross-site reset, a silent clash. Marker ``faults``; CI runs it with the rest. The full-disk test
mounts a small tmpfs, so it needs root (CI has it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from mock_server import MockConfig
from mock_server.sip.client import SipCaller
from mock_server.testing import children, free_port, free_udp_tcp_port, start_server
from tests.contract import assert_error
from tests.data import AUTH, VALID_BODY

pytestmark = pytest.mark.faults


def prepare(url: str, body: dict | None = None) -> requests.Response:
    return requests.post(f"{url}/v2/prepare_inbound", json=body or VALID_BODY, headers=AUTH, timeout=10)


def sip_call(server, call_id: str):
    caller = SipCaller("127.0.0.1", server.sip_port, t1=0.1, timeout=5)
    return caller.call(f"sip:+15551234567@127.0.0.1:{server.sip_port}", [("X-EI", f"S.{call_id};")], hold_s=0)


def sip_writer_pid(server) -> int:
    sip = [p for p in children(server.process.pid) if "sip.runner" in Path(f"/proc/{p}/cmdline").read_text()]
    writers = children(sip[0])
    assert writers, "the SIP process has no writer process"
    return writers[0]


# -- silent loss ------------------------------------------------------------------------------------

def test_killing_the_sip_writer_under_load_loses_no_answered_call():
    server = start_server("--sip-t1-ms", "100")
    try:
        ids = [prepare(server.url).json()["synthflow_call_id"] for _ in range(60)]
        answered: list[str] = []
        refused: list[str] = []

        def place(chunk: list[str]) -> None:
            for call_id in chunk:
                result = sip_call(server, call_id)
                (answered if result.answered else refused).append(call_id)

        threads = [threading.Thread(target=place, args=(ids[n::3],)) for n in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        os.kill(sip_writer_pid(server), signal.SIGKILL)  # mid-load
        for t in threads:
            t.join(60)
        assert answered, "no call was answered at all"
        deadline = time.monotonic() + 10
        missing = answered
        while missing and time.monotonic() < deadline:
            time.sleep(0.2)
            missing = [c for c in answered
                       if not requests.get(f"{server.url}/_mock/calls/{c}/sip", timeout=5).json()["messages"]]
        assert missing == [], f"answered 200 but not journaled: {missing[:5]}"
        for call_id in answered[:10]:
            call = requests.get(f"{server.url}/v2/calls/{call_id}", headers=AUTH, timeout=5).json()
            assert call["response"]["calls"][0]["call_status"] == "completed"
    finally:
        server.kill_group()


@pytest.fixture
def small_disk():
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    path = Path(tempfile.mkdtemp(prefix="synthflow-mock-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    # suppress outermost: closing the file flushes what the last write left in its buffer, and that fails too
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def test_a_full_disk_refuses_honestly_keeps_health_and_reads_and_recovers_by_itself(small_disk):
    server = start_server("--store", str(small_disk / "state.sqlite3"), "--sip-t1-ms", "100")
    try:
        assert prepare(server.url).status_code == 200
        filler = fill(small_disk)
        big = dict(VALID_BODY, custom_variables={f"k{n}": "x" * 200 for n in range(60)})
        statuses, oks = [], []
        for _ in range(3000):
            resp = prepare(server.url, big)
            statuses.append(resp.status_code)
            if resp.status_code == 200:
                oks.append(resp.json()["synthflow_call_id"])
            else:
                detail = assert_error(resp, 503, "service_unavailable")
                assert "full" in detail["description"] and resp.headers["Retry-After"] == "1"
                break
        assert 503 in statuses, "the disk never filled up"
        # Health first: a small journal write that still fits (the reads below write some) counts as a worker
        # recording again, and either worker may take a request.
        health = requests.get(f"{server.url}/_mock/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert "full" in health.json()["http"]["cause"]
        for call_id in oks:  # every 2xx is on record
            assert requests.get(f"{server.url}/v2/calls/{call_id}", headers=AUTH, timeout=5).status_code == 200
        assert requests.get(f"{server.url}/_mock/journal?limit=5", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/_mock/calls?limit=5", timeout=5).status_code == 200
        reset = requests.post(f"{server.url}/_mock/reset", json={}, timeout=10)  # done, or refused honestly
        assert reset.status_code == 200 or assert_error(reset, 503, "service_unavailable")

        filler.unlink()  # space returns: the mock recovers with no restart
        deadline = time.monotonic() + 10
        while prepare(server.url).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert prepare(server.url).status_code == 200
        # Each worker recovers at its own next write (a health request's journal entry is one), so every
        # worker's health comes back without a restart.
        deadline = time.monotonic() + 5
        while not (health := requests.get(f"{server.url}/_mock/health", timeout=5).json())["http"]["ok"] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health["http"]["ok"] is True and health["status"] == "ok", health
    finally:
        server.kill_group()


def test_while_its_journal_store_fails_the_sip_trunk_refuses_new_calls_with_a_reason():
    """The endpoint's half of a failing SIP journal store (the writer's half, reporting and retrying, is
    in test_sip_sink.py): no call is taken that could not be recorded, and calls are taken again after."""
    from tests.sip_client import SDP, UdpClient, request
    from tests.trunk import Trunk

    trunk = Trunk()
    try:
        client = UdpClient(trunk.port)
        sink = trunk.sip.endpoint.recorder.sink
        sink.failure = "journal store failing: OperationalError: database or disk is full"
        call_id = trunk.prepare()
        client.send(request("INVITE", trunk.port, client.local_port, xei=f"S.{call_id};", body=SDP))
        refused = client.recv()
        assert refused.status == 503 and "Journal Store Failing" in refused.first_line()
        assert "disk is full" in (refused.get("warning") or "") and refused.get("retry-after") == "5"
        assert client.silent(0.2)  # a stateless refusal: nothing retransmitted, no call state
        sink.failure = None  # the store records again
        client.send(request("INVITE", trunk.port, client.local_port, xei=f"S.{call_id};", body=SDP))
        assert [m.status for m in client.recv_until(200)][-1] == 200
    finally:
        trunk.stop()


# -- 500 HTML instead of JSON -------------------------------------------------------------------------

def test_json_nested_256_deep_is_a_400_naming_the_limit(make_client):
    client, backend = make_client()
    resp = client.post("/v2/prepare_inbound", data="[" * 256 + "]" * 256,
                       headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
    detail = assert_error(resp, 400, "invalid_json")
    assert "32 levels" in detail["description"]
    assert backend.store.journal()[-1]["status"] == 400  # journaled


@pytest.mark.parametrize("path, method, body", [
    ("/_mock/verify", "POST", {"limit": "x"}),
    ("/_mock/verify", "POST", {"count": {"eq": "x"}}),
    ("/_mock/verify", "POST", {"since": "yesterday"}),
    ("/_mock/verify", "POST", {"headers": "x"}),
    ("/_mock/policy", "PUT", {"seed": 1, "http": "x"}),
    ("/_mock/policy", "PUT", {"seed": "x"}),
    ("/_mock/policy", "PUT", {"http": {"latency": "x"}}),
    ("/_mock/policy", "PUT", {"http": {"rates": []}}),
    ("/_mock/scenarios", "POST", {"outcome": "failed", "match": {"model_id": ["x"]}}),
    ("/_mock/scenarios", "POST", {"outcome": "failed", "times": "many"}),
    ("/_mock/prepare_bulk", "POST", {"count": 2, "body": "x"}),
    ("/_mock/prepare_bulk", "POST", {"count": 100_000, "body": VALID_BODY}),
])
def test_each_bad_admin_type_is_a_422_naming_the_field(make_client, path, method, body):
    client, backend = make_client()
    detail = assert_error(client.open(path, method=method, json=body), 422, "validation_error")
    assert detail["field"].startswith("/") and detail["errors"]
    assert backend.store.journal(kinds=("admin",))[-1]["status"] == 422


def test_an_uncaught_error_is_a_journaled_json_500_with_its_request_id(make_client, monkeypatch, caplog):
    client, backend = make_client()
    monkeypatch.setattr(backend.store, "get_call", lambda call_id: 1 / 0)
    resp = client.get("/v2/calls/x", headers={"Authorization": "Bearer t"})
    detail = assert_error(resp, 500, "internal_error")
    assert detail["request_id"] == resp.headers["X-Request-Id"] and "ZeroDivisionError" in detail["description"]
    assert backend.store.journal()[-1]["request_id"] == detail["request_id"]
    assert [r for r in caplog.records if detail["request_id"] in r.getMessage()], "no log line"
    assert "Traceback" not in caplog.text


def test_every_answer_says_nosniff(make_client):
    client, _ = make_client()
    for resp in (client.get("/_mock/health"), client.get("/nope"), client.post("/v2/prepare_inbound")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


# -- the admin surface from a browser ---------------------------------------------------------------------

def test_a_cross_site_reset_is_refused(make_client):
    client, backend = make_client()
    client.post("/v2/prepare_inbound", json=VALID_BODY, headers={"Authorization": "Bearer t"})
    simple = client.post("/_mock/reset", data="{}", headers={"Content-Type": "text/plain",
                                                             "Origin": "http://evil.example"})
    assert_error(simple, 415, "unsupported_media_type")
    preflighted = client.post("/_mock/reset", json={}, headers={"Origin": "http://evil.example"})
    assert_error(preflighted, 403, "forbidden")
    assert backend.store.counters()["calls"] == 1  # nothing was reset
    same_origin = client.post("/_mock/reset", json={}, headers={"Origin": "http://localhost"})
    assert same_origin.status_code == 200


def test_a_dns_rebinding_host_cannot_read_the_admin_api():
    server = start_server("--no-sip")
    try:
        port = server.http_port
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /_mock/journal HTTP/1.1\r\nHost: attacker.example:%d\r\nConnection: close\r\n\r\n" % port)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403 ") and b"attacker.example" in answer
        assert requests.get(f"{server.url}/_mock/journal", timeout=5).status_code == 200  # Host: 127.0.0.1
    finally:
        server.kill_group()


# -- clashes --------------------------------------------------------------------------------------------

def serve_once(*args: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mock_server", "serve", *args], capture_output=True, text=True,
                          timeout=30)
    return proc.returncode, proc.stderr.strip(), time.monotonic() - t0


def test_a_busy_sip_port_is_refused_in_one_line():
    port = free_udp_tcp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        code, err, _ = serve_once("--http-port", str(free_port()), "--sip-port", str(port))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"SIP udp 127.0.0.1:{port}" in err and "--sip-port" in err and "Traceback" not in err


def test_a_store_served_by_another_instance_is_refused(tmp_path):
    store = str(tmp_path / "shared.sqlite3")
    first = start_server("--no-sip", "--store", store)
    try:
        code, err, _ = serve_once("--no-sip", "--http-port", str(free_port()), "--store", store)
        assert code == 2 and len(err.splitlines()) == 1
        assert store in err and f"pid {first.process.pid}" in err
    finally:
        first.kill_group()


def test_a_corrupt_store_fails_in_under_two_seconds_naming_the_file(tmp_path):
    store = tmp_path / "corrupt.sqlite3"
    store.write_bytes(os.urandom(8192))
    code, err, took = serve_once("--http-port", str(free_port()), "--sip-port", str(free_udp_tcp_port()),
                                 "--store", str(store))
    assert code == 2 and took < 2 and len(err.splitlines()) == 1
    assert str(store) in err and "not a usable SQLite database" in err


# -- caps -----------------------------------------------------------------------------------------------

def test_queued_scenarios_are_capped_with_a_clear_error(make_client):
    client, _ = make_client(scenarios_limit=3)
    for _ in range(3):
        assert client.post("/_mock/scenarios", json={"outcome": "failed", "times": 5}).status_code == 201
    detail = assert_error(client.post("/_mock/scenarios", json={"outcome": "failed"}), 429, "rate_limited")
    assert "3 scenarios are queued" in detail["description"]


def test_prepare_bulk_takes_at_most_5000_a_request_so_nothing_waits_long_behind_it(make_client):
    client, _ = make_client()
    t0 = time.monotonic()
    assert len(client.post("/_mock/prepare_bulk", json={"count": 5000, "body": VALID_BODY}).json["call_ids"]) == 5000
    assert time.monotonic() - t0 < 1.0  # about 100 ms on this machine; slack for shared CI
    assert_error(client.post("/_mock/prepare_bulk", json={"count": 5001, "body": VALID_BODY}), 422,
                 "validation_error")


def test_bytes_bound_the_calls_and_the_journal(make_client):
    client, backend = make_client(calls_max_bytes=200_000, journal_max_bytes=200_000)
    big = dict(VALID_BODY, custom_variables={f"k{n}": "x" * 500 for n in range(50)})  # ~26 KB a call
    for _ in range(40):
        assert client.post("/v2/prepare_inbound", json=big, headers={"Authorization": "Bearer t"}).status_code == 200
    counters = backend.store.counters()
    assert counters["calls_bytes"] <= 200_000 * 17 / 16 and counters["calls_evicted"] > 0
    assert counters["journal_bytes"] <= 200_000 * 17 / 16 and counters["journal_evicted"] > 0
    listed = client.get("/_mock/calls?limit=100").json
    assert listed["evicted"] == counters["calls_evicted"] and listed["total"] < 40


def test_config_round_trip_keeps_the_byte_caps():
    config = MockConfig(calls_max_bytes=5, journal_max_bytes=6)
    from mock_server.core.config import from_json, to_json

    assert (from_json(to_json(config)).calls_max_bytes, from_json(to_json(config)).journal_max_bytes) == (5, 6)
    assert json.loads(to_json(config))["redaction_salt"] == config.redaction_salt


def test_a_store_that_refuses_is_a_503_naming_it_not_a_bug(make_client, monkeypatch):
    import sqlite3

    client, backend = make_client()

    def full(call_id: str) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(backend.store, "get_call", full)
    detail = assert_error(client.get("/v2/calls/x", headers={"Authorization": "Bearer t"}), 503,
                          "service_unavailable")
    assert "database or disk is full" in detail["description"]
    health = client.get("/_mock/health").json
    assert health["http"]["refused"] == 1  # counted; the journal write after it worked, so it says ok again
    assert backend.store.journal()[-2]["status"] == 503


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                            ("localhost", True), ("10.0.0.1", False), ("in-process", False),
                                            (None, False), ("0.0.0.0", False)])
def test_one_loopback_test_serves_every_door(host, loopback):
    from mock_server.core.checks import is_loopback

    assert is_loopback(host) is loopback


def test_a_worker_that_records_still_reports_another_workers_failure(tmp_path):
    """Health requests reach any HTTP worker; each says degraded while any worker cannot record."""
    from mock_server.core.counters import SharedCounters
    from mock_server.core.health import Health

    board = SharedCounters(str(tmp_path / "state.counters"))
    first, second = Health("worker a", board), Health("worker b", board)
    first._tag, second._tag = "101 ", "202 "  # two processes' pids
    first.failed("OperationalError: database or disk is full", refused=1)
    seen = second.report()
    assert not seen["ok"] and seen["cause"] == "HTTP worker 101: OperationalError: database or disk is full"
    second.failed("OperationalError: database or disk is full")
    first.recovered()  # the board now names the second worker, which still fails: it stays
    assert not first.report()["ok"] and first.report()["cause"].startswith("HTTP worker 202:")
    second.recovered()
    assert first.report()["ok"] and second.report()["ok"]
    board.close()

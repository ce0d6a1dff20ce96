"""The async HTTP front over real sockets: waiting holds nothing, drops act on the socket, every
client-controlled wait has a bound, and reads that stall get a journaled 408."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import re
import socket
import time

import httpx
import pytest
import requests

from mock_server import MockConfig
from mock_server.core.backend import Backend
from mock_server.http.app import create_app
from mock_server.http.front import Front, FrontSettings, HttpConnection
from mock_server.http.worker import FrontThread
from mock_server.server.loops import new_event_loop
from tests.contract import assert_matches
from tests.data import AUTH, VALID_BODY


@pytest.fixture(scope="module")
def front():
    server = FrontThread(MockConfig(http_header_timeout_s=0.4, http_body_timeout_s=0.4,
                                    http_idle_timeout_s=0.6)).start()
    yield server
    server.stop()


def post(front, headers=None, timeout=5.0, **kw):
    return requests.post(f"{front.url}/v2/prepare_inbound", json=VALID_BODY, headers={**AUTH, **(headers or {})},
                         timeout=timeout, **kw)


def raw(front) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(front.url.rsplit(":", 1)[1])), timeout=5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_slow_answer_does_not_hold_up_others(front):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(post, front, {"Prefer": "outcome=slow, delay-ms=1500"}) for _ in range(3)]
        time.sleep(0.1)
        t0 = time.monotonic()
        quick = post(front)
        quick_s = time.monotonic() - t0
        assert quick.status_code == 200 and quick_s < 0.5
        assert all(f.result().status_code == 200 for f in slow)


def test_reset_is_a_connection_reset_with_no_answer(front):
    with pytest.raises(requests.exceptions.ConnectionError):
        post(front, {"Prefer": "outcome=reset"})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)), httpx.Client() as client:
        client.post(f"{front.url}/v2/prepare_inbound", json=VALID_BODY, headers={**AUTH, "Prefer": "outcome=reset"})


def test_timeout_holds_the_connection_then_closes_it(front):
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(front, {"Prefer": "outcome=timeout, hold-s=1"}, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.3) as client:
        client.post(f"{front.url}/v2/prepare_inbound", json=VALID_BODY,
                    headers={**AUTH, "Prefer": "outcome=timeout, hold-s=1"})
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):  # held, then closed with no answer
        post(front, {"Prefer": "outcome=timeout, hold-s=0.5"}, timeout=5)
    assert 0.45 <= time.monotonic() - t0 < 3


def test_the_drops_are_journaled_with_their_outcome(front):
    with pytest.raises(requests.exceptions.ConnectionError):
        post(front, {"Prefer": "outcome=reset"})
    time.sleep(0.05)
    entries = front.backend.store.journal(kinds=("http",), limit=100_000)
    assert any(e.get("outcome") == "reset" for e in entries)


@pytest.mark.parametrize("prefer, bound", [
    ("outcome=slow, delay-ms=1e9", "delay-ms=1e+09 is over its maximum of 60000"),
    ("outcome=timeout, hold-s=601", "hold-s=601 is over its maximum of 600"),
    ("outcome=rate_limited, retry-after=86401", "retry-after=86401 is over its maximum of 86400"),
    ("sip=answer, sip-answer-ms=600001", "sip-answer-ms=600001 is over its maximum of 600000"),
])
def test_each_wait_a_client_asks_for_has_a_documented_maximum(front, prefer, bound):
    t0 = time.monotonic()
    resp = post(front, {"Prefer": prefer})
    assert resp.status_code == 400 and time.monotonic() - t0 < 1
    assert_matches("error.schema.json", resp.json())
    assert bound in resp.json()["detail"]["description"] and resp.json()["detail"]["field"] == "Prefer"


@pytest.mark.parametrize("latency, pointer, rule", [
    ({"dist": "fixed", "ms": 1e7}, "/http/latency/ms", "maximum"),
    ({"dist": "lognormal", "median_ms": 10, "sigma": 9}, "/http/latency/sigma", "maximum"),
    ({"dist": "uniform", "min_ms": 5, "max_ms": "x"}, "/http/latency/max_ms", "type"),
])
def test_a_latency_policy_over_its_bounds_is_refused(front, latency, pointer, rule):
    resp = requests.put(f"{front.url}/_mock/policy", json={"seed": 1, "http": {"latency": latency}}, timeout=5)
    assert resp.status_code == 422
    assert {"pointer": pointer, "rule": rule} in [{k: e[k] for k in ("pointer", "rule")}
                                                  for e in resp.json()["detail"]["errors"]]


def test_a_latency_flag_over_its_bound_is_refused_at_start_up():
    from mock_server.cli import _config_from, build_parser

    with pytest.raises(SystemExit, match="ms=1e\\+07 is over its maximum of 60000"):
        _config_from(build_parser().parse_args(["serve", "--latency", "fixed:1e7"]))


def test_stalled_headers_get_408_json_after_the_header_timeout_and_are_journaled(front):
    sock = raw(front)
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n")
    t0 = time.monotonic()
    answer = read_all(sock)
    assert 0.35 <= time.monotonic() - t0 < 2
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head
    error = json.loads(body)
    assert_matches("error.schema.json", error)
    assert error["detail"]["category"] == "request_timeout" and "headers" in error["detail"]["description"]
    time.sleep(0.05)
    entry = [e for e in front.backend.store.journal(kinds=("http",), limit=100_000) if e.get("status") == 408][-1]
    assert entry["request_id"] == error["detail"]["request_id"] and entry["method"] == "POST"
    assert "s3cret" not in json.dumps(entry)


def test_stalled_body_gets_408_after_the_body_timeout(front):
    sock = raw(front)
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"body" in answer


def test_many_stalled_connections_do_not_stop_other_clients(front):
    stalled = []
    for _ in range(200):
        sock = raw(front)
        sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
        stalled.append(sock)
    times = []
    for _ in range(20):
        t0 = time.monotonic()
        assert post(front).status_code == 200
        times.append(time.monotonic() - t0)
    # a request held up by a stalled client would wait out its 0.4 s read timeout
    assert sorted(times)[len(times) // 2] < 0.05 and max(times) < 0.39
    answers = [read_all(s) for s in stalled]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)


def test_an_idle_keep_alive_connection_is_closed(front):
    sock = raw(front)
    body = json.dumps(VALID_BODY).encode()
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    t0 = time.monotonic()
    answer = read_all(sock)  # the answer, then the close after the idle timeout
    assert answer.startswith(b"HTTP/1.1 200 ") and 0.5 <= time.monotonic() - t0 < 3


def test_a_keep_alive_connection_in_use_outlives_its_first_idle_deadline(front):
    """Each answer moves the idle deadline on: a connection that never waits 0.6 s between requests stays open
    well past 0.6 s after it opened (when the timer set at the start fires)."""
    sock = raw(front)
    body = json.dumps(VALID_BODY).encode()
    request = (b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    t0, answers = time.monotonic(), 0
    while time.monotonic() - t0 < 1.6:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < int(
                re.search(rb"Content-Length: (\d+)", received).group(1)):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {time.monotonic() - t0:.2f} s and {answers} answers"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 ")
        answers += 1
        time.sleep(0.25)
    assert answers >= 6


def test_headers_trickling_in_are_timed_from_their_first_byte(front):
    """A client that sends a header byte every 0.1 s (slowloris) still gets its 408 at the header timeout."""
    sock = raw(front)
    t0 = time.monotonic()
    head = b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sock.settimeout(0.1)
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            continue
    sock.settimeout(5)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"headers" in answer
    assert 0.35 <= time.monotonic() - t0 < 1.0


def test_pipelined_requests_are_answered_in_order(front):
    sock = raw(front)
    sock.sendall(b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /_mock/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = read_all(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"404", b"200"]


def test_a_body_over_the_cap_gets_413_and_the_rest_is_not_read(front):
    sock = raw(front)
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 70_000)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer


def test_malformed_http_gets_400_json(front):
    sock = raw(front)
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    head, _, body = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["detail"]["category"] == "bad_request"


def test_a_closed_connection_leaves_no_reference_cycle(front):
    """The worker's full garbage collections wait for quiet moments (server/collector.py): a connection's
    parser must not keep it alive until one runs."""

    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            with requests.Session() as session:
                assert session.post(f"{front.url}/v2/prepare_inbound", json=VALID_BODY, headers=AUTH,
                                    timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while any(isinstance(o, HttpConnection) and o.transport is not None for o in gc.get_objects()):
            assert time.monotonic() < deadline, "the server did not see the clients close"
            time.sleep(0.05)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if type(o).__name__ == "HttpConnection"]
        assert left == [], f"{len(left)} closed connections were only freed by the cycle collector"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_chunked_body_is_read_whole(front):
    """A chunked request has no Content-Length: the front hands the app the decoded body all the same."""
    body = json.dumps(VALID_BODY).encode()
    chunks = iter([body[:20], body[20:]])
    response = requests.post(f"{front.url}/v2/prepare_inbound", data=chunks,
                             headers={**AUTH, "Content-Type": "application/json"}, timeout=5)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["custom_variables"] == VALID_BODY["custom_variables"]


def _head_of_prepare(expect: str, body: bytes, version: str = "1.1") -> bytes:
    return (f"POST /v2/prepare_inbound HTTP/{version}\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: {expect}\r\n"
            f"Connection: close\r\n\r\n").encode()


def test_expect_100_continue_is_answered_before_the_body_is_sent(front):
    """curl, .NET and Java clients send Expect: 100-continue and hold the body back until told (curl for
    a second, others until their timeout)."""
    body = json.dumps(VALID_BODY).encode()
    sock = raw(front)
    sock.settimeout(0.3)  # well under curl's one-second wait
    sock.sendall(_head_of_prepare("100-continue", body))
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.settimeout(5)
    sock.sendall(body)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["custom_variables"] == VALID_BODY["custom_variables"]


def test_a_body_sent_along_with_expect_gets_no_interim_answer(front):
    body = json.dumps(VALID_BODY).encode()
    sock = raw(front)
    sock.sendall(_head_of_prepare("100-continue", body) + body)
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_an_http_1_0_client_gets_no_100_continue(front):
    """RFC 9110, 10.1.1: a server must not send a 100 to an HTTP/1.0 client; it waits for the body."""
    body = json.dumps(VALID_BODY).encode()
    sock = raw(front)
    sock.settimeout(0.2)
    sock.sendall(_head_of_prepare("100-continue", body, version="1.0"))
    with pytest.raises(TimeoutError):
        sock.recv(100)
    sock.settimeout(5)
    sock.sendall(body)
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("body_sent", [False, True], ids=["body-held", "body-sent"])
def test_an_unknown_expectation_gets_417_json_and_is_journaled(front, body_sent):
    body = json.dumps(VALID_BODY).encode()
    sock = raw(front)
    sock.sendall(_head_of_prepare("teapot", body) + (body if body_sent else b""))
    head, _, payload = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 417 Expectation Failed") and b"Connection: close" in head
    error = json.loads(payload)
    assert_matches("error.schema.json", error)
    assert error["detail"]["category"] == "expectation_failed" and "'teapot'" in error["detail"]["description"]
    assert error["detail"]["field"] == "expect"
    time.sleep(0.05)
    journaled = [e for e in front.backend.store.journal(kinds=("http",), limit=100_000)
                 if e.get("request_id") == error["detail"]["request_id"]]
    assert journaled and journaled[0]["status"] == 417


@pytest.fixture(scope="module")
def small_heads():
    server = FrontThread(MockConfig(http_max_header_bytes=4096)).start()
    yield server
    server.stop()


def test_headers_without_end_get_431_once_over_the_limit(small_heads):
    """Without a bound, one connection sending headers for the read timeout grew a worker by gigabytes."""
    sock = raw(small_heads)
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.05)
    for _ in range(3):  # in reads of their own, never ending
        sock.sendall(b"X-Pad: " + b"a" * 1500 + b"\r\n")
        time.sleep(0.05)
    head, _, payload = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large") and b"Connection: close" in head
    error = json.loads(payload)
    assert_matches("error.schema.json", error)
    assert error["detail"]["category"] == "header_fields_too_large"
    assert "the limit is 4096" in error["detail"]["description"]
    time.sleep(0.05)
    assert any(e.get("request_id") == error["detail"]["request_id"] and e["status"] == 431
               for e in small_heads.backend.store.journal(kinds=("http",), limit=100_000))


def test_a_first_header_without_end_is_a_header_too_large_not_a_url(small_heads):
    sock = raw(small_heads)
    sock.sendall(b"POST /v2/prepare_inbound HTTP/1.1\r\nX-Pad: " + b"a" * 2000)
    time.sleep(0.05)
    sock.sendall(b"a" * 5000)  # the header still arriving in the first read is not counted; this read is
    assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_a_url_without_end_gets_414(small_heads):
    sock = raw(small_heads)
    sock.sendall(b"GET /v2/calls/" + b"a" * 5000)
    head, _, payload = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long")
    error = json.loads(payload)["detail"]
    assert error["category"] == "uri_too_long" and error["field"] == "url"


def test_the_header_limit_holds_for_a_request_read_whole_and_spares_bodies(small_heads):
    url = f"{small_heads.url}/v2/prepare_inbound"
    assert requests.post(url, json=VALID_BODY, headers={**AUTH, "X-Pad": "a" * 3500}, timeout=5).status_code == 200
    # a body far over the header limit is no head: only the body's own limit applies to it
    roomy = {**VALID_BODY, "custom_variables": {"pad": "b" * 20_000}}
    assert requests.post(url, json=roomy, headers=AUTH, timeout=5).status_code == 200
    refused = requests.post(url, json=VALID_BODY, headers={**AUTH, "X-Pad": "a" * 4500}, timeout=5)
    assert refused.status_code == 431 and "the limit is 4096" in refused.json()["detail"]["description"]
    assert requests.post(url, json=VALID_BODY, headers=AUTH, timeout=5).status_code == 200


def test_head_declares_the_length_get_would_send_and_sends_no_body(front):
    call_id = post(front).json()["synthflow_call_id"]
    get = requests.get(f"{front.url}/v2/calls/{call_id}", headers=AUTH, timeout=5)
    sock = raw(front)
    sock.sendall(f"HEAD /v2/calls/{call_id} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
                 f"Connection: close\r\n\r\n".encode())
    head, _, body = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) == len(get.content) > 100


def test_pipelined_requests_in_one_read_are_not_one_long_head(small_heads):
    """Many whole requests and the start of one more in one read: only the unfinished one is head."""
    request = b"GET /_mock/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /_mock/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sock = raw(small_heads)
    sock.sendall(request * 200 + last[:30])  # 9.4 KB, over the 4 KiB head limit, ending inside a request line
    time.sleep(0.1)
    sock.sendall(last[30:])
    answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 ") == 201 and b"HTTP/1.1 431" not in answers


class _UnreadTransport(asyncio.Transport):
    """A client that does not read: what the front writes piles up, and over 64 KiB the transport asks the
    front to pause writing, as uvloop's does at its high-water mark."""

    def __init__(self, protocol: HttpConnection) -> None:
        super().__init__()
        self.protocol, self.buffered, self.answers, self.reading = protocol, 0, 0, True

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        over_before = self.buffered > 64 * 1024
        self.buffered += len(data)
        self.answers += data.count(b"HTTP/1.1 ")
        if self.buffered > 64 * 1024 and not over_before:
            self.protocol.pause_writing()

    def drain(self) -> None:
        self.buffered = 0
        self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_client_that_pipelines_and_never_reads_is_no_longer_read(tmp_path):
    """Flow control: once the answers a client does not read fill the transport's buffer, the front takes
    none of its queued requests and reads no more until the buffer drains. Before, it read on and buffered
    every answer (a client pipelining health checks and never reading grew a worker by about 7 MB a second)."""
    loop = new_event_loop()
    backend = Backend(MockConfig(store_path=str(tmp_path / "state.sqlite3")))
    front = Front(create_app(backend=backend), backend, FrontSettings(), loop)
    conn = front.protocol()
    transport = _UnreadTransport(conn)
    conn.connection_made(transport)

    def settle() -> None:
        for _ in range(50):
            loop.run_until_complete(asyncio.sleep(0))

    try:
        conn.data_received(b"GET /_mock/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 500)
        settle()
        held = transport.answers
        assert 0 < held < 500 and transport.buffered <= 64 * 1024 + 4096  # paused at the mark
        assert not transport.reading and len(conn.queue) == 500 - held
        settle()
        assert transport.answers == held  # nothing more while the client does not read
        while transport.answers < 500:
            transport.drain()
            settle()
        assert transport.answers == 500 and transport.reading  # all answered once it reads, then read again
    finally:
        front.close()
        backend.store.close()
        loop.close()


def test_a_read_wait_does_not_run_while_the_front_works_through_a_pipelined_backlog():
    """The front stops reading while it answers pipelined requests; the rest of a request that came after
    them is the front's wait, not the client's (the read timeout here is 0.1 s; the backlog takes longer)."""
    server = FrontThread(MockConfig(http_header_timeout_s=0.1, http_body_timeout_s=0.1)).start()
    try:
        request = b"GET /_mock/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        last = b"GET /_mock/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        sock = raw(server)
        t0 = time.monotonic()
        sock.sendall(request * 5000 + last[:20])
        time.sleep(0.05)
        sock.sendall(last[20:])
        answers = read_all(sock)
        assert time.monotonic() - t0 > 0.2  # the backlog outlasted the read timeout
        assert answers.count(b"HTTP/1.1 200 ") == 5001 and b"HTTP/1.1 408" not in answers
    finally:
        server.stop()

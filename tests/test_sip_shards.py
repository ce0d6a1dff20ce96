"""Sharded SIP (issue #13): two SIP processes share the SIP port with SO_REUSEPORT. Each caller's
retransmissions, ACK, BYE and CANCEL reach the shard that holds its transaction, and every shard
finds every call prepared over HTTP."""

from __future__ import annotations

import time

import pytest
import requests

from mock_server.sip.message import tag_of
from mock_server.testing import start_server
from tests.sip_client import SDP, UdpClient, request

pytestmark = pytest.mark.live
BODY = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": "shards"}


@pytest.fixture(scope="module")
def server():
    live = start_server("--sip-workers", "2", "--media", "off", "--sip-t1-ms", "100", "--sip-ring-ms", "300",
                        "--quiet")
    yield live
    live.close()


def test_each_callers_dialog_stays_on_its_shard_and_both_shards_serve(server):
    ids = requests.post(f"{server.url}/_mock/prepare_bulk", timeout=10, json={"count": 24, "body": BODY}
                        ).json()["call_ids"]
    shards = set()
    for n, call_id in enumerate(ids):
        client = UdpClient(server.sip_port)  # a new source port: the kernel picks a shard for it
        invite = request("INVITE", server.sip_port, client.local_port, xei=f"S.{call_id};", body=SDP,
                         call_id=f"shard-{n}", branch=f"z9hG4bKshard{n}")
        client.send(invite)
        first = client.recv_until(100)[-1]
        shard = first.get("x-mock-shard")
        client.send(invite)  # a retransmission: the same transaction answers it again, not a new decision
        again = client.recv(2)
        assert again.get("x-mock-shard") == shard and again.status in (100, 180), again.first_line()
        if n % 2:
            client.send(request("CANCEL", server.sip_port, client.local_port, call_id=f"shard-{n}",
                                branch=f"z9hG4bKshard{n}", cseq_method="CANCEL"))
            answers = client.recv_until(487)
            assert {m.get("x-mock-shard") for m in answers} == {shard}
            assert any(m.status == 200 and (m.get("cseq") or "").endswith("CANCEL") for m in answers)
            client.ack_for(invite, answers[-1])
        else:
            ok = client.recv_until(200)[-1]
            client.ack_for(invite, ok)
            client.send(request("BYE", server.sip_port, client.local_port, call_id=f"shard-{n}", cseq=2,
                                to_tag=tag_of(ok.get("to"))))
            bye_ok = client.recv_until(200)[-1]
            assert bye_ok.get("x-mock-shard") == shard and (bye_ok.get("cseq") or "").endswith("BYE")
        shards.add(shard)
        client.close()
    assert shards == {"0", "1"}  # 24 source ports, two shards: both took calls
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        calls = requests.get(f"{server.url}/_mock/calls", params={"limit": 100}, timeout=5).json()["calls"]
        statuses = sorted(c["call_status"] for c in calls)
        if statuses == ["canceled"] * 12 + ["completed"] * 12:
            break
        time.sleep(0.1)
    assert statuses == ["canceled"] * 12 + ["completed"] * 12


def test_an_unknown_call_is_refused_statelessly_by_any_shard(server):
    client = UdpClient(server.sip_port)
    client.send(request("INVITE", server.sip_port, client.local_port, xei="S.never-prepared;", body=SDP))
    answer = client.recv(2)
    assert answer.status == 404 and answer.get("x-mock-shard") in ("0", "1")
    assert client.silent(0.5)  # one answer, no retransmission: no state was kept
    client.close()


def _prepared(server, count: int, prefer: str | None = None) -> list[str]:
    if prefer is None:
        return requests.post(f"{server.url}/_mock/prepare_bulk", timeout=10, json={"count": count, "body": BODY}
                             ).json()["call_ids"]
    return [requests.post(f"{server.url}/v2/prepare_inbound", json=BODY, timeout=10,
                          headers={"Authorization": "Bearer k", "Prefer": prefer}).json()["synthflow_call_id"]
            for _ in range(count)]


def test_ack_and_bye_from_another_source_port_reach_the_shard_holding_the_dialog(server):
    """The kernel may bring a caller's second socket to another shard; the To tag names the shard that
    holds the dialog, and that shard answers."""
    crossed = 0
    for n, call_id in enumerate(_prepared(server, 12)):
        caller, other = UdpClient(server.sip_port), UdpClient(server.sip_port)
        invite = request("INVITE", server.sip_port, caller.local_port, xei=f"S.{call_id};", body=SDP,
                         call_id=f"route-{n}", branch=f"z9hG4bKroute{n}")
        caller.send(invite)
        ok = caller.recv_until(200)[-1]
        owner = ok.get("x-mock-shard")
        assert (ok.get("to") or "").endswith(f"s{owner}"), ok.get("to")  # the tag names its shard
        other.ack_for(invite, ok)  # ACK and BYE from a second socket: maybe another shard
        other.send(request("BYE", server.sip_port, other.local_port, call_id=f"route-{n}", cseq=2,
                           to_tag=tag_of(ok.get("to"))))
        bye_ok = other.recv_until(200)[-1]
        assert (bye_ok.get("cseq") or "").endswith("BYE") and bye_ok.get("x-mock-shard") == owner
        assert caller.silent(0.3)  # ACK was taken: no 200 retransmission
        probe = UdpClient(server.sip_port)
        probe.send(request("OPTIONS", server.sip_port, probe.local_port, call_id=f"probe-{n}"))
        crossed += probe.recv(2).get("x-mock-shard") != owner  # a fresh socket landing elsewhere
        for c in (caller, other, probe):
            c.close()
        assert _status(server, call_id) == "completed"
    assert crossed > 0  # some second sockets did land on the other shard
    assert _routed(server, "to_owner") > 0


def test_a_cancel_from_another_source_port_is_answered_by_the_shard_holding_the_invite(server):
    for n, call_id in enumerate(_prepared(server, 8, prefer="sip=no_answer, no-answer-ms=20000")):
        caller, other = UdpClient(server.sip_port), UdpClient(server.sip_port)
        invite = request("INVITE", server.sip_port, caller.local_port, xei=f"S.{call_id};", body=SDP,
                         call_id=f"cancel-{n}", branch=f"z9hG4bKcancel{n}")
        caller.send(invite)
        owner = caller.recv_until(180)[-1].get("x-mock-shard")
        # The CANCEL's Via must equal the INVITE's (RFC 3261 §9.1); it is sent from another socket
        other.send(request("CANCEL", server.sip_port, caller.local_port, call_id=f"cancel-{n}",
                           branch=f"z9hG4bKcancel{n}", cseq_method="CANCEL"))
        cancel_ok = other.recv(2)
        assert cancel_ok.status == 200 and cancel_ok.get("x-mock-shard") == owner, cancel_ok.first_line()
        terminated = caller.recv_until(487)[-1]
        assert terminated.get("x-mock-shard") == owner
        caller.ack_for(invite, terminated)
        assert other.silent(0.5)  # one answer to the CANCEL, not a 481 beside it
        for c in (caller, other):
            c.close()
    assert _routed(server, "cancel_to_all") > 0


def test_a_cancel_no_shard_holds_is_answered_481_once(server):
    client = UdpClient(server.sip_port)
    client.send(request("CANCEL", server.sip_port, client.local_port, call_id="nobody", branch="z9hG4bKnobody",
                        cseq_method="CANCEL"))
    answer = client.recv(2)
    assert answer.status == 481
    assert client.silent(0.5)
    client.close()


def _routed(server, kind: str) -> float:
    text = requests.get(f"{server.url}/_mock/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("synthflow_mock_sip_routed_total{") and f'kind="{kind}"' in line)


def _status(server, call_id: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        calls = requests.get(f"{server.url}/_mock/calls", params={"limit": 200}, timeout=5).json()["calls"]
        status = next((c["call_status"] for c in calls if c["synthflow_call_id"] == call_id), None)
        if status == "completed" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_the_answer_to_the_mocks_own_bye_from_another_port_reaches_the_shard_that_sent_it(server):
    before = _routed(server, "to_owner")
    for n, call_id in enumerate(_prepared(server, 8, prefer="sip=hangup, hangup-after-ms=200")):
        caller, other = UdpClient(server.sip_port), UdpClient(server.sip_port)
        invite = request("INVITE", server.sip_port, caller.local_port, xei=f"S.{call_id};", body=SDP,
                         call_id=f"mockbye-{n}", branch=f"z9hG4bKmockbye{n}")
        caller.send(invite)
        ok = caller.recv_until(200)[-1]
        caller.ack_for(invite, ok)
        bye = caller.recv(3)
        assert bye.method == "BYE" and (bye.top_via.branch or "").endswith(f"s{ok.get('x-mock-shard')}")
        answer = "SIP/2.0 200 OK\r\n" + "".join(f"{name}: {bye.get(name)}\r\n" for name in
                                                 ("via", "from", "to", "call-id", "cseq")) + "Content-Length: 0\r\n\r\n"
        other.send(answer.encode())
        assert caller.silent(1.2)  # taken by the shard that sent the BYE: no retransmission (T1 is 100 ms)
        for c in (caller, other):
            c.close()
    assert _routed(server, "to_owner") > before

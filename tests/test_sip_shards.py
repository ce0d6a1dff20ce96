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

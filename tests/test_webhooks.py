"""Synthflow talking back (issue #15): post-call and inbound webhooks, pre-call actions, X-* variables.

Each test runs the core and the real SIP endpoint on loopback (``Trunk``), places calls with the
blocking SIP client the Twilio simulator uses, and lets a real HTTP server (``Receiver``) play the
integrator's backend.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_server.core.exchange import Request
from mock_server.sip.client import SipCaller
from mock_server.webhooks import signature
from tests.contract import assert_matches
from tests.receiver import Receiver
from tests.sip_client import SDP, UdpClient, request
from tests.trunk import Trunk

MODEL = "agent-a"
OTHER = "agent-b"
SECRET = "whsec-test-0123456789"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def make_trunk(receiver: Receiver, agents: dict | None = None, **config) -> Trunk:
    doc = agents or {"webhook_secret": SECRET, "agents": {
        MODEL: {"external_webhook_url": receiver.url("/post-call"), "timezone": "Europe/Berlin"}}}
    config.setdefault("webhook_backoff_s", 0.05)
    return Trunk(agents=doc, **config)


def prepare(trunk: Trunk, prefer: str = "", model: str = MODEL, **extra) -> str:
    body = {"from_number": "+15075785607", "to_number": "+15551234567", "model_id": model, **extra}
    headers = {"authorization": "Bearer t", "content-type": "application/json"}
    if prefer:
        headers["prefer"] = prefer
    resp = trunk.backend.handle(Request("POST", "/v2/prepare_inbound", headers, json.dumps(body).encode()))
    assert resp.status == 200, resp.body
    return json.loads(resp.body)["synthflow_call_id"]


def call(trunk: Trunk, call_id: str, *, hold_s: float = 0.1, xei_extra: str = "", headers=()):
    caller = SipCaller("127.0.0.1", trunk.port, t1=0.04, timeout=10)
    extra = [("X-EI", f"S.{call_id};{xei_extra}"), ("X-Twilio-CallSid", "CA" + "1" * 32), *headers]
    return caller.call(f"sip:+15551234567@127.0.0.1:{trunk.port}", extra, hold_s=hold_s)


def webhook_entries(trunk: Trunk, call_id: str) -> list[dict]:
    trunk.sip.endpoint.webhooks.wait_idle(15)
    return trunk.backend.store.journal(kinds=("webhook",), call_id=call_id, limit=100)


# -- the signature ---------------------------------------------------------------------------
@given(call_id=st.text(min_size=1, max_size=80), secret=st.text(min_size=1, max_size=64))
@settings(max_examples=200)
def test_signature_is_the_documented_computation(call_id, secret):
    reference = base64.b64encode(hmac.new(secret.encode(), call_id.encode(), hashlib.sha256).digest()).decode()
    assert signature.sign(secret, call_id) == reference
    assert signature.verify(secret, call_id, reference)
    assert not signature.verify(secret + "x", call_id, reference)


# -- post-call webhook -------------------------------------------------------------------------
def test_agent_hangup_sends_a_signed_post_call_webhook_that_matches_its_contract(receiver):
    trunk = make_trunk(receiver)
    try:
        call_id = prepare(trunk, "sip=hangup, hangup-after-ms=100")
        result = call(trunk, call_id, hold_s=3, xei_extra="E.crm-42;O.+15559876543;")
        assert result.answered and result.ended_by == "callee", result
        assert result.final.get("x-ci") == call_id  # Synthflow tags its answers with its call id
        got = receiver.wait_for(1, "/post-call")
        assert len(got) == 1
        hook = got[0]
        assert signature.verify(SECRET, call_id, hook.headers["synthflow-signature"])
        body = hook.json
        assert_matches("post-call-webhook.schema.json", body)
        assert body["status"] == "completed"
        assert body["call"]["call_id"] == call_id
        assert body["call"]["end_call_reason"] == "agent_ended_call"
        assert body["call"]["external_id"] == "crm-42" and body["call"]["diversion"] == "+15559876543"
        assert body["call"]["start_time"].endswith(("+01:00", "+02:00"))  # the agent's timezone
        assert body["lead"]["phone_number"] == "+15075785607"
        entries = webhook_entries(trunk, call_id)
        assert [(e["event"], e["status"], e["outcome"]) for e in entries] == [("post_call", 200, "delivered")]
        assert entries[0]["headers"]["synthflow-signature"].startswith("<redacted")  # no credential in the journal
        call_obj = trunk.call(call_id)
        assert_matches("call.schema.json", call_obj)
        assert call_obj["timeline"][-1]["event"] == "webhook_delivered"
        ladder = trunk.backend.handle(Request("GET", f"/_mock/calls/{call_id}/ladder", {})).body["steps"]
        webhook = [(s["source"], s["target"], s["label"]) for s in ladder if s["kind"] == "webhook"]
        assert webhook == [("api", "webhooks", "POST /post-call (post_call #1)"),
                           ("webhooks", "api", webhook[1][2])] and webhook[1][2].startswith("200 in "), ladder
    finally:
        trunk.stop()


def test_the_prepare_can_name_its_own_webhook_url(receiver):
    trunk = Trunk()  # no agents document at all
    try:
        call_id = prepare(trunk, external_webhook_url=receiver.url("/mine"))
        assert call(trunk, call_id).ended_by == "caller"
        got = receiver.wait_for(1, "/mine")
        assert got and got[0].json["call"]["end_call_reason"] == "human_ended_call"
        # no secret configured: the documented default signs it
        assert signature.verify("synthflow-mock-webhook-secret", call_id, got[0].headers["synthflow-signature"])
    finally:
        trunk.stop()


def test_a_rejecting_receiver_gets_retries_then_the_failure_is_recorded(receiver):
    receiver.answer("/post-call", (401, {"error": "bad signature"}, 0.0))
    trunk = make_trunk(receiver, webhook_retries=2)
    try:
        call_id = prepare(trunk, "sip=busy")
        result = call(trunk, call_id)
        assert result.final.status == 486
        got = receiver.wait_for(3, "/post-call")
        assert len(got) == 3
        assert got[0].json["status"] == "busy"
        entries = webhook_entries(trunk, call_id)
        assert [(e["attempt"], e["status"], e["outcome"]) for e in entries] == [
            (1, 401, "failed"), (2, 401, "failed"), (3, 401, "failed")]
        assert trunk.call(call_id)["timeline"][-1]["event"] == "webhook_failed"
        verdict = trunk.backend.handle(Request("POST", "/_mock/verify", {"content-type": "application/json"},
                                               json.dumps({"kind": "webhook", "call_id": call_id, "status": 401,
                                                           "count": {"eq": 3}}).encode()))
        assert verdict.body["ok"], verdict.body
    finally:
        trunk.stop()


@pytest.mark.parametrize("failure", ["down", "slow", "error"])
def test_a_bad_receiver_never_delays_other_calls(receiver, failure):
    if failure == "down":
        url = "http://127.0.0.1:9/post-call"  # the discard port: nothing listens
    else:
        url = receiver.url("/post-call")
        receiver.answer("/post-call", (500, {}, 0.0) if failure == "error" else (200, {}, 3.0))
    agents = {"agents": {MODEL: {"external_webhook_url": url}}}
    trunk = make_trunk(receiver, agents, webhook_timeout_s=5.0, webhook_retries=1)
    try:
        started = time.monotonic()
        results = [call(trunk, prepare(trunk), hold_s=0.0) for _ in range(5)]
        took = time.monotonic() - started
        assert all(r.answered and r.bye_status == 200 for r in results)
        # five calls, each of whose webhooks waits 3 s (or fails): none of them waited for it
        assert took < 2.5, took
        assert trunk.sip.endpoint.webhooks.wait_idle(20)
        entries = trunk.backend.store.journal(kinds=("webhook",), limit=100)
        assert len(entries) >= 5
        if failure != "slow":
            assert all(e["outcome"] == "failed" for e in entries)
            assert all(e["error"] for e in entries) if failure == "down" else all(e["status"] == 500 for e in entries)
    finally:
        trunk.stop()


# -- the inbound call webhook ------------------------------------------------------------------
def inbound_agents(receiver: Receiver, **hook) -> dict:
    return {"webhook_secret": SECRET, "agents": {
        MODEL: {"inbound_webhook": {"url": receiver.url("/inbound"), **hook},
                "external_webhook_url": receiver.url("/post-call")},
        OTHER: {"pre_call_actions": [{"name": "lookup", "url": receiver.url("/lookup"), "body": {"id": "<call_id>"}}],
                "external_webhook_url": receiver.url("/post-call-b")}}}


@pytest.mark.parametrize("answer", [{"call_inbound": {"override_model_id": ""}},
                                    {"call_inbound": {"override_model_id": None}}])
def test_inbound_webhook_keeps_the_agent(receiver, answer):
    receiver.answer("/inbound", (200, answer, 0.2))
    trunk = make_trunk(receiver, inbound_agents(receiver))
    try:
        call_id = prepare(trunk)
        result = call(trunk, call_id)
        assert result.answered, result
        # the INVITE stayed at 180 while the webhook ran (0.2 s), then 200
        steps = [s.status for s in result.steps]
        assert steps[:3] == [100, 180, 200], result.steps
        assert result.steps[2].ms - result.steps[1].ms >= 150
        hook = receiver.wait_for(1, "/inbound")[0]
        assert_matches("call-inbound-webhook.schema.json", hook.json)
        assert hook.json["call_inbound"] == {"model_id": MODEL, "from_number": "+15075785607",
                                             "to_number": "+15551234567", "call_id": call_id}
        assert signature.verify(SECRET, call_id, hook.headers["synthflow-signature"])
        assert trunk.call(call_id)["model_id"] == MODEL
        assert receiver.wait_for(1, "/post-call")
    finally:
        trunk.stop()


def test_inbound_webhook_overrides_the_agent_whose_actions_and_webhook_then_apply(receiver):
    receiver.answer("/inbound", (200, {"call_inbound": {"override_model_id": OTHER}}, 0.0))
    receiver.answer("/lookup", (200, {"name": "John"}, 0.0))
    trunk = make_trunk(receiver, inbound_agents(receiver))
    try:
        call_id = prepare(trunk)
        assert call(trunk, call_id).answered
        assert receiver.wait_for(1, "/lookup")[0].json == {"id": call_id}
        got = receiver.wait_for(1, "/post-call-b")  # the new agent's webhook, not the first one's
        assert got and got[0].json["call"]["model_id"] == OTHER
        assert not [r for r in receiver.received if r.path == "/post-call"]
        obj = trunk.call(call_id)
        assert obj["model_id"] == OTHER and obj["prompt_variables"]["name"] == "John"
        assert [a["action"] for a in obj["executed_actions"]] == ["lookup"]
    finally:
        trunk.stop()


def test_inbound_webhook_answering_empty_disconnects_the_call(receiver):
    receiver.answer("/inbound", (200, {}, 0.0))
    trunk = make_trunk(receiver, inbound_agents(receiver))
    try:
        call_id = prepare(trunk)
        result = call(trunk, call_id)
        assert result.final.status == 603 and result.final.reason == "Disconnected By Inbound Webhook"
        assert "override_model_id" in result.final.get("warning")
        obj = trunk.call(call_id)
        assert obj["call_status"] == "failed"
        assert receiver.wait_for(1, "/post-call")[0].json["status"] == "failed"
    finally:
        trunk.stop()


@pytest.mark.parametrize("on_failure", ["default_agent", "disconnect"])
def test_inbound_webhook_that_times_out_is_retried_then_falls_back(receiver, on_failure):
    receiver.answer("/inbound", (200, {"call_inbound": {"override_model_id": OTHER}}, 1.0))  # always too late
    trunk = make_trunk(receiver, inbound_agents(receiver, timeout_s=0.2, retries=2, on_failure=on_failure))
    try:
        call_id = prepare(trunk)
        result = call(trunk, call_id)
        assert len(receiver.wait_for(3, "/inbound")) == 3  # the first try and 2 retries
        entries = webhook_entries(trunk, call_id)
        inbound = [e for e in entries if e["event"] == "call_inbound"]
        assert [e["attempt"] for e in inbound] == [1, 2, 3]
        assert all("no answer within 0.2 s" in e["error"] for e in inbound)
        if on_failure == "default_agent":
            assert result.answered and trunk.call(call_id)["model_id"] == MODEL
        else:
            assert result.final.status == 603 and "failed 3 time(s)" in result.final.get("warning")
    finally:
        trunk.stop()


def test_a_caller_that_cancels_while_the_inbound_webhook_runs_is_not_answered(receiver):
    receiver.answer("/inbound", (200, {"call_inbound": {"override_model_id": ""}}, 0.5))
    trunk = make_trunk(receiver, inbound_agents(receiver))
    try:
        call_id = prepare(trunk)
        client = UdpClient(trunk.port)
        invite = request("INVITE", trunk.port, client.local_port, xei=f"S.{call_id};", call_id="cancel-me",
                         branch="z9hG4bKcancel1", body=SDP)
        client.send(invite)
        assert [m.status for m in client.recv_until(180)] == [100, 180]
        client.send(request("CANCEL", trunk.port, client.local_port, call_id="cancel-me", branch="z9hG4bKcancel1",
                            cseq_method="CANCEL"))
        answers = client.recv_until(487)
        client.ack_for(invite, answers[-1])
        # the webhook answers 0.5 s after the INVITE, when the call is already cancelled: no 200 follows
        later = []
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            try:
                later.append(client.recv(max(0.05, deadline - time.monotonic())).status)
            except TimeoutError:
                break
        assert 200 not in later, later
        assert trunk.status(call_id) == "canceled"
        client.close()
    finally:
        trunk.stop()


# -- pre-call actions and variables --------------------------------------------------------------
ACTION_BODY = {"call": "<call_id>", "external": "<external_id>", "diversion": "<diversion>",
               "sid": "<twilio_call_sid>", "customer": "{X-Customer-Name}", "missing": "{X-Not-Sent}"}


def action_agents(receiver: Receiver) -> dict:
    return {"agents": {MODEL: {"pre_call_actions": [
        {"name": "crm", "url": receiver.url("/crm?ext=<external_id>"), "method": "POST", "body": ACTION_BODY,
         "headers": {"X-Account": "{X-Account-ID}"}},
        {"name": "not-before", "url": receiver.url("/never"), "run_action_before_call_start": False}]}}}


def test_pre_call_action_gets_variables_from_xei_and_x_headers_and_its_answer_becomes_prompt_variables(receiver):
    receiver.answer("/crm", (200, {"first_name": "John", "tier": "gold"}, 0.0))
    trunk = make_trunk(receiver, action_agents(receiver))
    try:
        call_id = prepare(trunk)
        result = call(trunk, call_id, xei_extra="E.crm-42;O.+15559876543;",
                      headers=[("X-Customer-Name", "Ada Lovelace"), ("X-Account-ID", "acct-7")])
        assert result.answered
        got = receiver.wait_for(1, "/crm")[0]
        assert got.path == "/crm?ext=crm-42"
        assert got.headers["x-account"] == "acct-7"
        assert got.json == {"call": call_id, "external": "crm-42", "diversion": "+15559876543",
                            "sid": "CA" + "1" * 32, "customer": "Ada Lovelace", "missing": ""}
        obj = trunk.call(call_id)
        assert_matches("call.schema.json", obj)
        variables = obj["prompt_variables"]
        assert variables["first_name"] == "John" and variables["tier"] == "gold"
        assert variables["X-Customer-Name"] == "Ada Lovelace" and variables["X-Account-Id"] == "acct-7"
        [action] = obj["executed_actions"]
        assert action["action"] == "crm" and action["status"] == 200
        assert action["missing_variables"] == ["{X-Not-Sent}"]
        assert not [r for r in receiver.received if r.path == "/never"]
    finally:
        trunk.stop()


@pytest.mark.parametrize("header", ["Diversion", "X-Diversion"])
def test_diversion_header_fills_the_o_value_when_xei_has_none(receiver, header):
    trunk = make_trunk(receiver, action_agents(receiver))
    try:
        call_id = prepare(trunk)
        result = call(trunk, call_id, headers=[(header, "<sip:+15550001111@carrier.example>;reason=unconditional")])
        assert result.answered
        assert receiver.wait_for(1, "/crm")[0].json["diversion"] == "+15550001111"
    finally:
        trunk.stop()


def test_every_x_header_becomes_a_variable_even_without_agents():
    trunk = Trunk()
    try:
        call_id = prepare(trunk)
        assert call(trunk, call_id, headers=[("X-Language", "de-DE"), ("X-Priority", "high")]).answered
        variables = trunk.call(call_id)["prompt_variables"]
        assert variables["X-Language"] == "de-DE" and variables["X-Priority"] == "high"
        assert variables["X-EI"] == f"S.{call_id};"
    finally:
        trunk.stop()

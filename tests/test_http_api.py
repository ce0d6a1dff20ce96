"""POST /v2/prepare_inbound and GET /v2/calls/{id}: every answer checked against contracts/."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.contract import assert_error, assert_matches
from tests.data import AUTH, VALID_BODY


def prepare(client, body=None, headers=None, **kw):
    return client.post("/v2/prepare_inbound", json=VALID_BODY if body is None else body,
                       headers={**AUTH, **(headers or {})}, **kw)


def test_registered_answer_is_the_full_call_object(client):
    resp = prepare(client)
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    call = resp.json
    assert_matches("prepare-inbound-registered.schema.json", call)
    assert call["call_status"] == "registered"
    assert call["direction"] == "inbound"
    assert uuid.UUID(call["synthflow_call_id"]).version == 4
    assert call["model_id"] == VALID_BODY["model_id"]
    assert call["workspace_id"] == VALID_BODY["workspace_id"]
    assert call["custom_variables"] == VALID_BODY["custom_variables"]
    assert call["lead_phone_number"] == VALID_BODY["from_number"]
    assert call["agent_phone_number"] == VALID_BODY["to_number"]
    assert call["error_message"] is None
    assert call["start_time"] > 1_700_000_000_000  # epoch milliseconds, not seconds


def test_every_call_gets_a_fresh_id(client):
    ids = {prepare(client).json["synthflow_call_id"] for _ in range(20)}
    assert len(ids) == 20


def test_optional_fields_may_be_left_out(client):
    body = {k: VALID_BODY[k] for k in ("from_number", "to_number", "model_id")}
    call = prepare(client, body).json
    assert_matches("prepare-inbound-registered.schema.json", call)
    assert call["workspace_id"] is None
    assert call["custom_variables"] == {}


def test_failed_outcome_by_prefer_header(client):
    resp = prepare(client, headers={"Prefer": "outcome=failed"})
    assert resp.status_code == 200
    assert_matches("prepare-inbound-failed.schema.json", resp.json)
    assert "outage" in resp.json["error_message"]


def test_failed_outcome_by_server_flag_and_503_status(make_client):
    client, _ = make_client(default_outcome="failed", failed_status=503)
    resp = prepare(client)
    assert resp.status_code == 503
    assert_matches("prepare-inbound-failed.schema.json", resp.json)
    # a request can still ask for the working answer
    ok = prepare(client, headers={"Prefer": "outcome=registered"})
    assert ok.status_code == 200 and ok.json["call_status"] == "registered"


def test_unknown_prefer_outcome_is_named(client):
    detail = assert_error(prepare(client, headers={"Prefer": "outcome=exploded"}), 400, "validation_error")
    assert detail["field"] == "Prefer" and "exploded" in detail["description"]


@pytest.mark.parametrize("headers, fragment", [
    ({}, "Missing Authorization"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "Malformed"),
    ({"Authorization": "Bearer "}, "Malformed"),
    ({"Authorization": "Bearer"}, "Malformed"),
])
def test_missing_or_malformed_token_is_401(client, headers, fragment):
    resp = client.post("/v2/prepare_inbound", json=VALID_BODY, headers=headers)
    detail = assert_error(resp, 401, "unauthorized")
    assert fragment in detail["description"] and detail["field"] == "Authorization"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_configured_tokens_are_enforced(make_client):
    client, _ = make_client(tokens=("alpha", "beta"))
    assert prepare(client, headers={"Authorization": "Bearer beta"}).status_code == 200
    detail = assert_error(prepare(client, headers={"Authorization": "Bearer gamma"}), 401, "unauthorized")
    assert "--token" in detail["description"]


def test_other_content_type_is_415(client):
    resp = client.post("/v2/prepare_inbound", data="from_number=x", headers={**AUTH, "Content-Type": "text/plain"})
    detail = assert_error(resp, 415, "unsupported_media_type")
    assert "text/plain" in detail["description"]
    assert_error(client.post("/v2/prepare_inbound", data=b"{}", headers=AUTH), 415, "unsupported_media_type")


def test_json_with_charset_is_accepted(client):
    resp = client.post("/v2/prepare_inbound", data=json.dumps(VALID_BODY),
                       headers={**AUTH, "Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200


@pytest.mark.parametrize("raw", [b'{"from_number": ', b"not json", b'{"a": NaN}', b"\xff\xfe", b""])
def test_unparseable_json_is_400(client, raw):
    resp = client.post("/v2/prepare_inbound", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_json")


def test_documented_example_body_with_trailing_comma_is_400(client):
    # Synthflow's own page shows this body; it is not JSON, and the mock says so.
    raw = (b'{"from_number": "", "to_number": "", "model_id": "", "workspace_id": "", '
           b'"custom_variables": {"name": "value"},}')
    resp = client.post("/v2/prepare_inbound", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert "not valid JSON" in assert_error(resp, 400, "invalid_json")["description"]


def test_oversize_body_is_413(make_client):
    client, _ = make_client(max_body_bytes=1024)
    body = dict(VALID_BODY, custom_variables={"blob": "x" * 2000})
    detail = assert_error(prepare(client, body), 413, "payload_too_large")
    assert "1024" in detail["description"]


def test_schema_violations_are_all_listed_with_pointer_and_rule(client):
    body = {"from_number": "15075785607", "model_id": "", "custom_variables": {"nested": {"a": 1}}, "form_number": "+1"}
    detail = assert_error(prepare(client, body), 422, "validation_error")
    found = {(e["pointer"], e["rule"]) for e in detail["errors"]}
    assert found == {
        ("/from_number", "pattern"),
        ("/to_number", "required"),
        ("/model_id", "minLength"),
        ("/custom_variables/nested", "type"),
        ("/form_number", "additionalProperties"),
    }
    assert detail["field"] == detail["errors"][0]["pointer"]
    assert "5 violation(s)" in detail["description"]


@pytest.mark.parametrize("raw", ["[]", '"text"', "42", "null"])
def test_body_that_is_not_an_object_is_422(client, raw):
    resp = client.post("/v2/prepare_inbound", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    detail = assert_error(resp, 422, "validation_error")
    assert detail["errors"][0]["rule"] == "type"


def test_extra_fields_can_be_allowed(make_client):
    client, _ = make_client(allow_extra_fields=True)
    resp = prepare(client, dict(VALID_BODY, campaign="spring"))
    assert resp.status_code == 200
    assert_matches("prepare-inbound-registered.schema.json", resp.json)


def test_get_call_returns_the_prepared_call(client):
    call = prepare(client).json
    resp = client.get(f"/v2/calls/{call['synthflow_call_id']}", headers=AUTH)
    assert resp.status_code == 200
    assert_matches("call-lookup.schema.json", resp.json)
    assert resp.json["response"]["calls"] == [call]


def test_get_unknown_call_is_404_and_needs_auth(client):
    detail = assert_error(client.get(f"/v2/calls/{uuid.uuid4()}", headers=AUTH), 404, "not_found")
    assert detail["field"] == "call_id"
    assert_error(client.get(f"/v2/calls/{uuid.uuid4()}"), 401, "unauthorized")


def test_unknown_route_is_404_json(client):
    detail = assert_error(client.get("/v2/nothing", headers=AUTH), 404, "not_found")
    assert "/v2/nothing" in detail["description"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_wrong_method_is_405_json(client, method):
    resp = client.open("/v2/prepare_inbound", method=method, headers=AUTH)
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


def test_every_answer_carries_a_request_id_matching_the_error_body(client):
    resp = prepare(client, {"model_id": 1})
    assert resp.headers["X-Request-Id"] == resp.json["detail"]["request_id"]


def test_seed_makes_call_ids_reproducible(make_client):
    a, _ = make_client(seed=7)
    b, _ = make_client(seed=7)
    ids_a = [prepare(a).json["synthflow_call_id"] for _ in range(3)]
    ids_b = [prepare(b).json["synthflow_call_id"] for _ in range(3)]
    assert ids_a == ids_b and len(set(ids_a)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids_a)


def test_bad_input_leaves_state_untouched(make_client):
    client, backend = make_client()
    prepare(client)
    for bad in ({"model_id": 3}, [], {"from_number": "+1" * 40}):
        prepare(client, bad)
    assert backend.store.counters()["calls"] == 1

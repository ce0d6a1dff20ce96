"""The admin API (/_mock/*) and the bounded journal."""

from __future__ import annotations

import time

from tests.contract import assert_error, assert_matches
from tests.data import AUTH, VALID_BODY


def prepare(client, headers=None):
    return client.post("/v2/prepare_inbound", json=VALID_BODY, headers={**AUTH, **(headers or {})})


def test_health(client):
    resp = client.get("/_mock/health")
    assert resp.status_code == 200 and resp.json["status"] == "ok"


def test_calls_lists_prepared_calls_newest_first(client):
    ids = [prepare(client).json["synthflow_call_id"] for _ in range(3)]
    body = client.get("/_mock/calls").json
    assert [c["synthflow_call_id"] for c in body["calls"]] == ids[::-1]
    assert body["total"] == 3
    for call in body["calls"]:
        assert_matches("call.schema.json", call)


def test_journal_records_every_request_with_token_redacted(client):
    prepare(client)
    client.post("/v2/prepare_inbound", data="x", headers={**AUTH, "Content-Type": "text/plain"})
    client.get("/nowhere")
    entries = client.get("/_mock/journal").json["entries"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/v2/prepare_inbound", 200),
        ("POST", "/v2/prepare_inbound", 415),
        ("GET", "/nowhere", 404),
    ]
    first = entries[0]
    assert first["outcome"] == "registered" and first["reason"] == "server-default"
    assert first["call_id"] and first["body"].startswith("{")
    auth = first["headers"]["authorization"]
    assert "test-token" not in auth and auth.startswith("Bearer <redacted sha256:")
    assert entries[1]["error"] == "unsupported_media_type"


def test_journal_filters(client):
    call_id = prepare(client).json["synthflow_call_id"]
    prepare(client)
    client.get(f"/v2/calls/{call_id}", headers=AUTH)
    mid = time.time()
    time.sleep(0.01)
    prepare(client, headers={"Prefer": "outcome=failed"})
    by_call = client.get(f"/_mock/journal?call_id={call_id}").json["entries"]
    assert [e["path"] for e in by_call] == ["/v2/prepare_inbound", f"/v2/calls/{call_id}"]
    by_path = client.get("/_mock/journal?path=/v2/prepare_inbound").json["entries"]
    assert len(by_path) == 3
    since = client.get(f"/_mock/journal?since={mid}").json["entries"]
    assert [e["outcome"] for e in since] == ["failed"]
    assert_error(client.get("/_mock/journal?since=yesterday"), 400, "validation_error")
    assert_error(client.get("/_mock/journal?kind=ftp"), 400, "validation_error")


def test_admin_requests_are_journaled_apart(client):
    client.get("/_mock/health")
    assert client.get("/_mock/journal").json["entries"] == []
    admin = client.get("/_mock/journal?kind=admin").json["entries"]
    assert [e["path"] for e in admin] == ["/_mock/health", "/_mock/journal"]


def test_journal_is_bounded_and_counts_evictions(make_client):
    client, _ = make_client(journal_limit=5)
    for _ in range(8):
        prepare(client)
    body = client.get("/_mock/journal").json
    assert len(body["entries"]) == 5 and body["size"] == 5 and body["limit"] == 5
    assert body["evicted"] == 3
    seqs = [e["seq"] for e in body["entries"]]
    assert seqs == sorted(seqs) and seqs[-1] == 8


def test_calls_are_bounded_and_count_evictions(make_client):
    client, _ = make_client(calls_limit=2)
    ids = [prepare(client).json["synthflow_call_id"] for _ in range(4)]
    body = client.get("/_mock/calls").json
    assert [c["synthflow_call_id"] for c in body["calls"]] == ids[:1:-1]
    assert body["evicted"] == 2


def test_long_bodies_are_cut_in_the_journal_and_say_so(make_client):
    client, _ = make_client(journal_body_limit=50)
    prepare(client)
    entry = client.get("/_mock/journal").json["entries"][0]
    assert len(entry["body"]) == 50 and entry["body_truncated"] is True and entry["body_bytes"] > 50


def test_reset_forgets_calls_and_journal(client):
    call_id = prepare(client).json["synthflow_call_id"]
    assert client.post("/_mock/reset", json={}).json == {"reset": True}
    assert client.get("/_mock/calls").json["total"] == 0
    assert client.get("/_mock/journal").json["entries"] == []
    assert_error(client.get(f"/v2/calls/{call_id}", headers=AUTH), 404, "not_found")


def test_admin_token_guards_the_admin_api(make_client):
    client, _ = make_client(admin_token="s3cret")
    assert_error(client.get("/_mock/calls"), 401, "unauthorized")
    assert_error(client.get("/_mock/calls", headers={"X-Mock-Admin-Token": "nope"}), 403, "forbidden")
    assert client.get("/_mock/calls", headers={"X-Mock-Admin-Token": "s3cret"}).status_code == 200
    # the Synthflow API itself does not need the admin token
    assert prepare(client).status_code == 200
    journal = client.get("/_mock/journal?kind=admin", headers={"X-Mock-Admin-Token": "s3cret"}).json["entries"]
    assert all("s3cret" not in str(e["headers"]) for e in journal)


def test_openapi_is_served_bundled(client):
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    text = str(doc)
    assert ".schema.json" not in text  # every file reference was inlined
    assert set(doc["components"]["schemas"]) >= {"Call", "Error", "PrepareInboundRequest"}


def test_prepare_bulk_registers_many_calls_through_the_contract(client):
    resp = client.post("/_mock/prepare_bulk", json={"count": 50, "body": VALID_BODY})
    assert resp.status_code == 200
    ids = resp.json["call_ids"]
    assert len(set(ids)) == 50
    call = client.get(f"/v2/calls/{ids[7]}", headers=AUTH).json["response"]["calls"][0]
    assert_matches("call.schema.json", call)
    assert call["call_status"] == "registered"
    bad = client.post("/_mock/prepare_bulk", json={"count": 2, "body": {"from_number": "x"}})
    assert_error(bad, 422, "validation_error")
    assert_error(client.post("/_mock/prepare_bulk", json={"count": 0, "body": VALID_BODY}), 422, "validation_error")
    failed = client.post("/_mock/prepare_bulk", json={"count": 1, "body": VALID_BODY, "outcome": "failed"})
    assert client.get(f"/v2/calls/{failed.json['call_ids'][0]}", headers=AUTH).json["response"]["calls"][0][
        "call_status"] == "failed"

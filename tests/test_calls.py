"""Call objects: built from the contract's defaults, and moved through their lifecycle by events."""

from __future__ import annotations

import re
import time

from mock_server.core import calls
from mock_server.core.calls import CallEvent, IdSource, apply_events
from tests.contract import assert_matches
from tests.data import VALID_BODY

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_ids_are_uuid4_and_seeded_ones_repeat():
    fresh = IdSource()
    assert all(UUID4.match(fresh.new()) for _ in range(200))
    assert [IdSource(9).new() for _ in range(2)] == [IdSource(9).new()] * 2
    seeded = IdSource(9)
    assert seeded.new() != seeded.new()


def test_fresh_ids_end_with_the_time_so_they_sort_by_it():
    fresh = IdSource()
    before = time.time_ns() // 1_000_000
    ids = [fresh.new() for _ in range(500)]
    after = time.time_ns() // 1_000_000
    stamps = [int(i[24:], 16) for i in ids]
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)
    assert len({i[:23] for i in ids}) == len(ids)  # the other 74 bits are random
    seeded = [IdSource(9).new(), IdSource(10).new()]
    assert not any(before <= int(i[24:], 16) <= after for i in seeded)  # seeded ids are random throughout


def test_new_call_matches_the_contract_and_echoes_the_body():
    call = calls.new_call(VALID_BODY, IdSource().new(), 123)
    assert_matches("call.schema.json", call)
    assert call["lead_phone_number"] == VALID_BODY["from_number"]
    assert call["agent_phone_number"] == VALID_BODY["to_number"]
    assert call["call_status"] == "registered" and call["timeline"] == [{"event": "prepared", "time": 123}]


def test_a_failed_call_says_why():
    call = calls.new_call(VALID_BODY, "id-2", 1, error_message=calls.FAILED_MESSAGE)
    assert call["call_status"] == "failed" and call["error_message"] == calls.FAILED_MESSAGE


def test_calls_share_no_mutable_state():
    a, b = calls.new_call(VALID_BODY, "a", 1), calls.new_call(VALID_BODY, "b", 1)
    a["timeline"].append({"event": "x"})
    a["custom_variables"]["name"] = "changed"
    assert len(b["timeline"]) == 1 and b["custom_variables"]["name"] == "erfan"


def test_events_fold_in_order():
    call = calls.new_call(VALID_BODY, "c", 1)
    apply_events(call, [CallEvent("c", 2, "invite", "ringing", {"sip_call_id": "s"}),
                        CallEvent("c", 3, "bye", "completed", fields={"duration": 5})])
    assert call["call_status"] == "completed" and call["duration"] == 5
    assert call["timeline"][1] == {"event": "invite", "time": 2, "detail": {"sip_call_id": "s"}}

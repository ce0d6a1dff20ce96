"""The SQLite store alone: bounds that evict and count, reopening after fork, scenarios consumed once."""

from __future__ import annotations

import os
import time

import pytest

from mock_server.core import calls
from mock_server.core.calls import CallEvent
from mock_server.core.exchange import Write
from mock_server.core.store import Store
from tests.data import VALID_BODY


def new_call(n: int) -> dict:
    return calls.new_call(VALID_BODY, f"call-{n}", 1_700_000_000_000 + n)


def entry(n: int) -> dict:
    return {"time": time.time(), "kind": "http", "path": f"/p/{n}"}


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    path = ":memory:" if request.param == "memory" else str(tmp_path / "state.sqlite3")
    s = Store(path, journal_limit=5, calls_limit=3)
    yield s
    s.close()


def test_journal_keeps_the_newest_entries_and_counts_what_it_evicted(store):
    for n in range(12):
        store.record(entry(n))
    kept = store.journal(kinds=("http",))
    assert [e["path"] for e in kept] == [f"/p/{n}" for n in range(7, 12)]
    counters = store.counters()
    assert counters["journal_evicted"] == 7 and counters["journal_size"] == 5


def test_calls_keep_the_newest_and_their_events_go_with_them(store):
    for n in range(5):
        store.write([Write(entry(n), new_call(n))])
        store.apply([], [CallEvent(f"call-{n}", 1, "invite", "ringing")])
    assert store.get_call("call-0") is None and store.get_call("call-1") is None
    assert store.get_call("call-4")["call_status"] == "ringing"
    assert store.counters()["calls_evicted"] == 2
    assert store.call_status("call-1") is None


def test_a_group_write_stores_every_call_and_entry_and_applies_the_bound_once(store):
    store.write([Write(entry(n), new_call(n)) for n in range(4)] + [Write(entry(9))])
    assert [c["synthflow_call_id"] for c in store.list_calls()[0]] == ["call-3", "call-2", "call-1"]
    assert store.counters()["calls_evicted"] == 1
    assert [e["path"] for e in store.journal()] == ["/p/0", "/p/1", "/p/2", "/p/3", "/p/9"]


def test_status_comes_from_the_newest_event(store):
    store.write([Write(entry(1), new_call(1), plan={"plan": "busy"})])
    store.apply([], [CallEvent("call-1", 1, "invite", "ringing"), CallEvent("call-1", 2, "answered"),
                     CallEvent("call-1", 3, "bye", "completed", fields={"duration": 4})])
    assert store.status_and_plan("call-1") == ("completed", {"plan": "busy"})
    call = store.get_call("call-1")
    assert call["duration"] == 4 and [t["event"] for t in call["timeline"]] == ["prepared", "invite", "answered",
                                                                                "bye"]


def test_a_scenario_is_consumed_exactly_times_and_only_when_it_matches(store):
    sid = store.add_scenario({"from_number": "+1"}, {"outcome": "failed"}, 2)
    wanted = lambda match, spec: match.get("from_number") == "+1"  # noqa: E731
    assert store.take_scenario(lambda match, spec: False) is None
    assert store.take_scenario(wanted) == (sid, {"outcome": "failed"})
    assert store.take_scenario(wanted) == (sid, {"outcome": "failed"})
    assert store.take_scenario(wanted) is None
    assert store.scenarios()[0]["remaining"] == 0
    assert store.settings_state()[1] == 0


def test_reset_forgets_everything_but_the_policy(store):
    store.set_policy({"seed": 1})
    store.write([Write(entry(1), new_call(1))])
    store.add_scenario({}, {"outcome": "failed"}, 1)
    store.reset()
    assert store.counters()["calls"] == 0 and store.scenarios() == [] and store.journal() == []
    assert store.policy() == {"seed": 1}


def test_draws_are_one_sequence_that_a_new_policy_restarts(store):
    assert [store.next_draw() for _ in range(3)] == [1, 2, 3]
    store.set_policy({"seed": 2})
    assert store.next_draw() == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reopens_the_file_and_its_writes_are_seen(tmp_path):
    store = Store(str(tmp_path / "state.sqlite3"))
    store.write([Write(entry(1), new_call(1))])
    pid = os.fork()
    if pid == 0:  # child: the inherited connection is unusable; the store must open its own
        try:
            store.write([Write(entry(2), new_call(2))])
            os._exit(0 if store.get_call("call-1") else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_call("call-2") is not None
    store.close()


def test_a_bad_path_fails_at_start_up():
    with pytest.raises(OSError, match="nonexistent-dir"):
        Store("/nonexistent-dir/x/state.sqlite3")

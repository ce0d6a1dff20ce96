"""Timers on a clock the test steps: no event loop, no sleeping."""

from __future__ import annotations

import asyncio

from mock_server.sip.timers import LoopTimers, ManualClock, Timers


def test_timers_run_in_deadline_order_only_when_due():
    clock = ManualClock()
    timers = Timers(clock)
    ran: list[str] = []
    timers.call_later(2.0, ran.append, "late")
    timers.call_later(1.0, ran.append, "early")
    assert timers.run_due() == 0 and ran == []
    clock.advance(1.0)
    assert timers.run_due() == 1 and ran == ["early"]
    clock.advance(5.0)
    assert timers.run_due() == 1 and ran == ["early", "late"]
    assert timers.next_deadline() is None


def test_cancelled_timers_never_run_and_drop_from_the_deadline():
    clock = ManualClock()
    timers = Timers(clock)
    ran: list[int] = []
    first = timers.call_later(1.0, ran.append, 1)
    timers.call_later(3.0, ran.append, 3)
    first.cancel()
    assert timers.next_deadline() == 3.0
    clock.advance(10)
    timers.run_due()
    assert ran == [3]


def test_lane_keeps_fixed_delay_timers_in_order_beside_the_heap():
    clock = ManualClock()
    timers = Timers(clock)
    lane = timers.lane(32.0)
    assert timers.lane(32.0) is lane
    ran: list[str] = []
    lane.call_later(ran.append, "a")
    clock.advance(1)
    lane.call_later(ran.append, "b")
    timers.call_later(5.0, ran.append, "heap")
    assert timers.next_deadline() == 6.0
    clock.advance(31.5)  # now 32.5: "heap" (6) and "a" (32) are due, "b" (33) is not
    timers.run_due()
    assert ran == ["heap", "a"]
    assert timers.next_deadline() == 33.0
    clock.advance(1)
    timers.run_due()
    assert ran == ["heap", "a", "b"] and len(timers) == 0


def test_a_timer_set_while_running_runs_when_due_not_at_once():
    clock = ManualClock()
    timers = Timers(clock)
    ran: list[float] = []

    def again() -> None:
        ran.append(clock())
        if len(ran) < 3:
            timers.call_later(1.0, again)

    timers.call_later(1.0, again)
    for _ in range(5):
        clock.advance(1.0)
        timers.run_due()
    assert ran == [1.0, 2.0, 3.0]


def test_loop_timers_wake_the_loop_at_the_deadline():
    loop = asyncio.new_event_loop()
    try:
        timers = LoopTimers(loop, resolution=0.001)
        fired: list[float] = []
        start = loop.time()
        timers.call_later(0.05, lambda: fired.append(loop.time() - start))
        timers.call_later(0.01, lambda: fired.append(loop.time() - start))
        loop.run_until_complete(asyncio.sleep(0.1))
        assert len(fired) == 2
        assert 0.009 <= fired[0] < 0.05 <= fired[1] < 0.09
    finally:
        loop.close()

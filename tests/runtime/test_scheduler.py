"""Schedules: fixed-rate slots that neither drift nor pile up."""

from __future__ import annotations

import pytest

from yurt_iot.runtime.scheduler import PHASE_GROUPS, Schedule, Source, parse_duration, phase_of


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("1m30s", 90.0), ("1.5s", 1.5), ("250us", 0.00025), ("2h", 7200.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "fast", "1s ", "s", "-1s"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_slots_follow_the_start_not_the_poll_completion() -> None:
    source = Source("fast", ("a",), 0.1)
    schedule = Schedule([source], now=100.0)
    for k in range(1, 1001):
        due_at = schedule.next_due()
        assert due_at == pytest.approx(100.0 + k * 0.1, abs=1e-9)  # no accumulated drift after 1000 polls
        assert schedule.take_due(due_at + 0.03) == [source]  # each poll 30 ms late, within its period
    assert schedule.late == 0


def test_a_late_poll_skips_missed_slots_and_counts_them() -> None:
    source = Source("s", ("a",), 1.0)
    schedule = Schedule([source], now=0.0)
    assert schedule.take_due(3.5) == [source]  # slots 1, 2, 3 were due: one poll, not three
    assert schedule.late == 2
    assert schedule.next_due() == pytest.approx(4.0)


def test_only_due_sources_are_taken() -> None:
    fast, slow = Source("fast", ("a",), 1.0), Source("slow", ("b",), 5.0)
    schedule = Schedule([fast, slow], now=0.0)
    assert schedule.take_due(1.0) == [fast]
    assert schedule.take_due(2.0) == [fast]
    assert schedule.take_due(4.99) == [fast]  # slot 3 due at 3.0; slot 4 at 4.0 also passed: one skipped
    assert schedule.late == 1
    assert schedule.take_due(5.0) == [fast, slow]
    assert schedule.next_due() == pytest.approx(6.0)


def test_intervals_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Schedule([Source("s", ("a",), 0.0)], now=0.0)


def test_a_phase_spreads_first_polls_over_the_period() -> None:
    fast, slow = Source("fast", ("a",), 0.1), Source("slow", ("b",), 10.0)
    schedule = Schedule([fast, slow], now=50.0, phase=0.25)
    assert fast.next_due == pytest.approx(50.025) and slow.next_due == pytest.approx(52.5)
    assert schedule.take_due(fast.next_due) == [fast]
    assert fast.next_due == pytest.approx(50.125)  # then every period from the phase on


def test_devices_with_one_phase_poll_together_whenever_they_started() -> None:
    early, late = Source("s", ("a",), 0.5), Source("s", ("a",), 0.5)
    Schedule([early], now=100.01, phase=0.25)
    Schedule([late], now=100.1, phase=0.25)  # started 90 ms later: still the same slots, 0.125 s into each period
    assert early.next_due == late.next_due == pytest.approx(100.125)
    past = Source("s", ("a",), 0.5)
    Schedule([past], now=100.2, phase=0.25)  # this period's slot has passed: the next one, never at once
    assert past.next_due == pytest.approx(100.625)


def test_device_phases_are_stable_and_spread_over_the_groups() -> None:
    phases = [phase_of(f"device-{i}") for i in range(1600)]
    assert phases == [phase_of(f"device-{i}") for i in range(1600)]
    assert set(phases) == {k / PHASE_GROUPS for k in range(1, PHASE_GROUPS + 1)}
    share = len(phases) / PHASE_GROUPS
    assert all(0.75 * share <= phases.count(k / PHASE_GROUPS) <= 1.25 * share for k in range(1, PHASE_GROUPS + 1))

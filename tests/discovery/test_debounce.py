"""The debouncer with a fake clock: quiet period, maximum delay, merging."""

from __future__ import annotations

import pytest

from malla.discovery.debounce import DebounceSettings, Debouncer


def make(quiet=0.1, max_delay=10.0):
    return Debouncer(DebounceSettings(quiet, max_delay), lambda a, b: a | b)


def test_a_single_event_is_pushed_after_the_quiet_period():
    d = make()
    d.add({"a"}, now=5.0)
    assert d.due(5.05) is None
    assert d.deadline() == pytest.approx(5.1)
    assert d.due(5.1) == {"a"}
    assert not d.pending and d.due(6.0) is None


def test_events_within_the_quiet_period_are_merged_into_one_push():
    d = make()
    for i, t in enumerate([0.0, 0.05, 0.12, 0.2]):
        d.add({i}, now=t)
        assert d.due(t) is None
    assert d.due(0.29) is None
    assert d.due(0.301) == {0, 1, 2, 3}
    assert d.events == 4


def test_a_steady_stream_is_still_pushed_by_the_maximum_delay():
    d = make(quiet=0.1, max_delay=1.0)
    t = 0.0
    pushes = []
    while t < 2.5:
        d.add({round(t, 2)}, now=t)
        got = d.due(t)
        if got:
            pushes.append((t, len(got)))
        t += 0.05
    assert [round(p[0], 2) for p in pushes] == [1.0, 2.05]


def test_negative_settings_are_refused():
    with pytest.raises(ValueError):
        DebounceSettings(quiet=-1)

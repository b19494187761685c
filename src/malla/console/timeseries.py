"""A small in-memory time series of Istio counters per scraped target.

Each scrape of a target (one workload instance's metrics endpoint) is stored
as the increase of every counter since the previous scrape, so a restarted
proxy (counters back to zero) and a flow seen for the first time count
correctly, as Prometheus' ``rate()`` would. Rates are per second: over a
window (``rates``) for the graph, or per step (``steps``) for the charts.
Time is passed in by the caller; nothing here reads the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from malla.console.istio_metrics import Counters, SeriesKey

Rates = dict[SeriesKey, Counters]


@dataclass(frozen=True)
class _Point:
    t: float  # when this scrape ended
    dt: float  # seconds since the previous scrape of the same target
    deltas: dict[SeriesKey, Counters]


@dataclass
class _Target:
    last: dict[SeriesKey, Counters] | None = None
    last_t: float = 0.0
    live: bool = True  # scraped successfully last time; a gone target's rates fade over the window
    points: deque[_Point] = field(default_factory=deque)


def _increase(current: dict[SeriesKey, Counters], previous: dict[SeriesKey, Counters]) -> dict[SeriesKey, Counters]:
    out: dict[SeriesKey, Counters] = {}
    for key, counters in current.items():
        before = previous.get(key, {})
        delta = {}
        for name, value in counters.items():
            old = before.get(name, 0.0)
            # A counter that went down was reset (the proxy restarted): all of its value is new.
            delta[name] = value - old if value >= old else value
        # Zeros stay while anything moved: an empty bucket is the lower bound of the next one.
        if any(delta.values()):
            out[key] = delta
    return out


def add_into(total: Counters, more: Counters, *, scale: float = 1.0) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value * scale


class MetricsStore:
    """Scrapes in, rates out. ``history`` seconds of points are kept per target."""

    def __init__(self, *, history: float = 900.0) -> None:
        self.history = history
        self._targets: dict[str, _Target] = {}

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def record(self, target: str, counters: dict[SeriesKey, Counters], *, now: float) -> None:
        state = self._targets.setdefault(target, _Target())
        if state.last is not None and now > state.last_t:
            state.points.append(_Point(now, now - state.last_t, _increase(counters, state.last)))
        state.last, state.last_t, state.live = counters, now, True
        self._expire(state, now=now)

    def missed(self, target: str, *, now: float) -> None:
        """A scrape failed: keep the baseline (counters survive a slow answer) but let rates fade."""
        state = self._targets.get(target)
        if state is not None:
            state.live = False
            self._expire(state, now=now)

    def retain(self, live: Iterable[str], *, now: float) -> None:
        """Targets that left the mesh stop being baselines; their points age out with the history."""
        keep = set(live)
        for name in list(self._targets):
            state = self._targets[name]
            if name not in keep:
                state.live, state.last = False, None
            self._expire(state, now=now)
            if not state.points and state.last is None:
                del self._targets[name]

    def _expire(self, state: _Target, *, now: float) -> None:
        while state.points and state.points[0].t < now - self.history:
            state.points.popleft()

    def rates(self, *, now: float, window: float) -> Rates:
        """Per-second rates over the last ``window`` seconds, summed over targets."""
        total: Rates = {}
        for state in self._targets.values():
            points = [p for p in state.points if p.t > now - window]
            if not points:
                continue
            start = max(points[0].t - points[0].dt, now - window)
            end = points[-1].t if state.live else now
            seconds = max(end - start, 1e-9)
            for p in points:
                for key, delta in p.deltas.items():
                    add_into(total.setdefault(key, {}), delta, scale=1.0 / seconds)
        return total

    def steps(self, *, now: float, span: float, step: float) -> list[tuple[float, Rates | None]]:
        """Per-second rates in consecutive steps covering the last ``span`` seconds, oldest first.

        A step no scrape ended in is None (nothing known), unlike a step with scrapes and no traffic ({}).
        """
        count = max(int(span // step), 1)
        start = now - count * step
        buckets: list[Rates] = [{} for _ in range(count)]
        covered: set[int] = set()
        for state in self._targets.values():
            per_bucket: dict[int, tuple[float, Rates]] = {}
            for p in state.points:
                if p.t <= start:
                    continue
                index = min(int((p.t - start) // step), count - 1)
                seconds, sums = per_bucket.get(index, (0.0, {}))
                for key, delta in p.deltas.items():
                    add_into(sums.setdefault(key, {}), delta)
                per_bucket[index] = (seconds + p.dt, sums)
                covered.add(index)
            for index, (seconds, sums) in per_bucket.items():
                for key, delta in sums.items():
                    add_into(buckets[index].setdefault(key, {}), delta, scale=1.0 / seconds)
        return [(start + (i + 1) * step, buckets[i] if i in covered else None) for i in range(count)]

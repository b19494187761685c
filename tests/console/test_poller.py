"""The poller scrapes every target each round; one that fails is reported and the others still count."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from malla.console.poller import MetricsPoller
from malla.console.timeseries import MetricsStore
from tests.console.fakes import Flow, istio_text

GOOD, BAD = "127.0.1.5", "127.0.1.6"


def test_a_failing_target_is_named_and_the_others_still_count() -> None:
    clock = [100.0]
    flows = [Flow("productpage", "reviews", "reviews", rps=2)]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == BAD:
            return httpx.Response(503, text="envoy is starting")
        return httpx.Response(200, text=istio_text(flows, elapsed=clock[0] - 100))

    workloads = [{"name": n, "namespace": "default", "address": a, "sidecar": True} for n, a in (("a", GOOD), ("b", BAD))]
    store = MetricsStore()
    poller = MetricsPoller(lambda: workloads, store=store, clock=lambda: clock[0])

    async def rounds() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            for now in (100.0, 105.0, 110.0):
                clock[0] = now
                await poller.scrape_once(client)

    asyncio.run(rounds())
    assert poller.rounds == 3
    assert list(poller.errors) == [f"http://{BAD}:15020/stats/prometheus"]
    assert "503" in poller.errors[f"http://{BAD}:15020/stats/prometheus"]
    rates = store.rates(now=110, window=60)
    assert sum(c.get("req:200", 0) for c in rates.values()) == pytest.approx(2)

"""Bookinfo's ratings service (Istio's is Node.js): ``GET /ratings/<id>`` answers two reviewers' stars.

``POST /ratings/<id>`` with a JSON body replaces a product's ratings in memory.
The version (``--version`` or ``$SERVICE_VERSION``) picks Istio's fault
demonstrations: ``v-faulty`` fails half the requests with 503, ``v-delayed``
delays half by 7 s, ``v-unavailable`` is down every other minute and
``v-unhealthy`` is down, and fails its health check, every other 15 minutes.
Istio's database-backed ``v2`` (MongoDB or MySQL) is not offered.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from malla.samples.bookinfo._http import Request, Response, Router, json_response, parse_args, serve

VERSIONS = ("v1", "v-faulty", "v-delayed", "v-unavailable", "v-unhealthy")
DELAY_SECONDS = 7.0
# How long each state lasts in the flapping versions: Kiali shows the last
# 10 or 30 minutes, so 15 minutes each way shows a 50% error rate.
FLAP_PERIOD = {"v-unavailable": 60.0, "v-unhealthy": 900.0}
_LEADING_INTEGER = re.compile(r"\s*([+-]?\d+)")


class Ratings:
    """The ratings held in memory, and the version's faults; the clock and the dice are injected."""

    def __init__(self, *, version: str, clock: Callable[[], float] = time.monotonic,
                 dice: Callable[[], float] = random.random, sleep: Callable[[float], None] = time.sleep) -> None:
        self.version = version
        self._clock, self._dice, self._sleep = clock, dice, sleep
        self._started = clock()
        self._added: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, product_id: int) -> dict[str, Any]:
        with self._lock:
            added = self._added.get(product_id)
        return added if added is not None else {"id": product_id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}

    def put(self, product_id: int, ratings: Any) -> dict[str, Any]:
        with self._lock:
            self._added[product_id] = {"id": product_id, "ratings": ratings}
        return self.get(product_id)

    def _flapped(self) -> bool:
        period = FLAP_PERIOD.get(self.version)
        return period is not None and int((self._clock() - self._started) // period) % 2 == 1

    def healthy(self) -> bool:
        return not (self.version == "v-unhealthy" and self._flapped())

    def serve_get(self, product_id: int) -> Response:
        if self.version == "v-faulty" and self._dice() <= 0.5:
            return _unavailable()
        if self.version == "v-delayed" and self._dice() <= 0.5:
            self._sleep(DELAY_SECONDS)
        if self._flapped():
            return _unavailable()
        return json_response(self.get(product_id))


def _unavailable() -> Response:
    return json_response({"error": "Service unavailable"}, status=503)


def product_id_of(path: str) -> int | None:
    """The last path segment's leading integer, as the original's ``parseInt`` reads it."""
    match = _LEADING_INTEGER.match(path.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def make_router(ratings: Ratings) -> Router:
    router = Router()
    bad_id = {"error": "please provide numeric product ID"}

    @router.route("/health")
    def health(_: Request) -> Response:
        if ratings.healthy():
            return json_response({"status": "Ratings is healthy"})
        return json_response({"status": "Ratings is not healthy"}, status=500)

    @router.route(r"/ratings/[0-9]*.*", methods=("GET", "POST"))
    def ratings_route(request: Request) -> Response:
        product_id = product_id_of(request.path)
        if product_id is None:
            return json_response(bad_id, status=400)
        if request.method != "POST":
            return ratings.serve_get(product_id)
        try:
            body = json.loads(request.body or b"")
        except ValueError:
            return json_response({"error": "please provide valid ratings JSON"}, status=400)
        return json_response(ratings.put(product_id, body))

    return router


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, prog="ratings", versions=VERSIONS)
    serve(make_router(Ratings(version=args.version)), name=f"ratings {args.version}", port=args.port)


if __name__ == "__main__":
    main()

"""Bookinfo's reviews service (Istio's is Java): ``GET /reviews/<id>`` answers two reviews.

The version is picked as Istio's images pick it (``--version`` or
``$SERVICE_VERSION``, else ``$MALLA_VERSION`` which ``malla run --version``
sets): v1 shows no ratings; v2 asks ratings and colours the stars black; v3
asks ratings and colours them red. ``ENABLE_RATINGS`` and ``STAR_COLOR`` in the
environment override the version's choice, as they do in Istio's images. The
call to ratings waits 10 s with black stars and 2.5 s otherwise, the timeouts
that Istio's fault-injection task is written around.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from malla.samples.bookinfo._http import (
    Peers,
    Request,
    Response,
    Router,
    forward_headers,
    json_response,
    parse_args,
    peer_url,
    serve,
)

VERSIONS = ("v1", "v2", "v3")
_DEFAULTS = {"v1": (False, "black"), "v2": (True, "black"), "v3": (True, "red")}
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
REVIEWS = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared "
                  "to other plays by Shakespeare."),
)
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Settings:
    ratings_enabled: bool
    star_color: str
    ratings_url: str
    podname: str
    clustername: str

    @property
    def ratings_timeout(self) -> float:
        return 10.0 if self.star_color == "black" else 2.5


def settings_for(version: str, *, env: Mapping[str, str]) -> Settings:
    enabled, color = _DEFAULTS[version]
    if "ENABLE_RATINGS" in env:
        enabled = env["ENABLE_RATINGS"].strip().lower() == "true"
    return Settings(
        ratings_enabled=enabled,
        star_color=env.get("STAR_COLOR") or color,
        ratings_url=peer_url("ratings", env=env) + "/ratings",
        podname=env.get("HOSTNAME") or socket.gethostname(),
        # The original writes Java's null as the string "null"; productpage checks for it.
        clustername=env.get("CLUSTER_NAME") or "null",
    )


def stars_of(ratings: Any, reviewer: str) -> int | None:
    """A reviewer's stars from ratings' answer, None when it has none."""
    value = ratings.get(reviewer) if isinstance(ratings, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def reviews_body(product_id: str, settings: Settings, ratings: Any) -> dict[str, Any]:
    reviews = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if settings.ratings_enabled:
            stars = stars_of(ratings, reviewer)
            review["rating"] = ({"stars": stars, "color": settings.star_color} if stars is not None
                                else {"error": RATINGS_UNAVAILABLE})
        reviews.append(review)
    return {"id": product_id, "podname": settings.podname, "clustername": settings.clustername,
            "reviews": reviews}


def make_router(settings: Settings, *, peers: Peers) -> Router:
    router = Router()

    @router.route("/health")
    def health(_: Request) -> Response:
        return json_response({"status": "Reviews is healthy"})

    @router.route(r"/reviews/([^/]+)")
    def reviews(request: Request) -> Response:
        raw = request.params[0]
        if not _INTEGER.fullmatch(raw):
            return json_response({"error": "please provide numeric product id"}, status=404)
        product_id = str(int(raw))
        ratings = None
        if settings.ratings_enabled:
            reply = peers.get_json(f"{settings.ratings_url}/{product_id}", headers=forward_headers(request),
                                   timeout=settings.ratings_timeout)
            if reply.status == 200 and isinstance(reply.data, dict):
                ratings = reply.data.get("ratings")
        return json_response(reviews_body(product_id, settings, ratings))

    return router


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, prog="reviews", versions=VERSIONS)
    settings = settings_for(args.version, env=os.environ)
    serve(make_router(settings, peers=Peers()), name=f"reviews {args.version}", port=args.port)


if __name__ == "__main__":
    main()

"""Bookinfo's product page (Istio's is Flask): the HTML page and the JSON API in front of details and reviews.

Calls details once and reviews up to twice (Istio keeps that retry on purpose,
for its fault-injection task), each with a 3 s timeout. The signed-in user is
the ``user`` cookie that ``POST /login`` sets; it travels on as ``end-user``,
the header Istio's ``virtual-service-reviews-jason-v2-v3.yaml`` matches.
``FLOOD_FACTOR=N`` sends N extra requests to reviews per page, for the rate
limiting tasks. ``/metrics`` counts the answers of each peer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from malla.samples.bookinfo import _pages
from malla.samples.bookinfo._http import (
    CONTEXT_HEADERS,
    TRACE_HEADERS,
    Peers,
    Reply,
    Request,
    Response,
    Router,
    forward_headers,
    json_response,
    parse_args,
    peer_url,
    redirect,
    serve,
    text_response,
)

PEER_TIMEOUT = 3.0
REVIEWS_ATTEMPTS = 2
PRODUCTS = (
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest "
            "and one of his most farcical comedies, with a major part of the humour coming from slapstick "
            "and mistaken identity, in addition to puns and word play."
        ),
    },
)
UNAVAILABLE = "Sorry, product {} are currently unavailable for this book."
# B3 travels as the original's B3 propagator writes it (below); end-user comes from the cookie.
_B3 = ("x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags")
_COPIED = tuple(h for h in TRACE_HEADERS if not h.startswith("x-b3-")) + tuple(
    h for h in CONTEXT_HEADERS if h != "end-user"
)

REQUEST_RESULTS = Counter("request_result", "Results of requests", ["destination_app", "response_code"])


def b3_headers(request: Request) -> dict[str, str]:
    """The incoming B3 context as multi headers, read from x-b3-* or else from a single ``b3`` header."""
    if request.header("x-b3-traceid") and request.header("x-b3-spanid"):
        return forward_headers(request, _B3)
    parts = (request.header("b3") or "").split("-")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        return {}
    headers = {"x-b3-traceid": parts[0], "x-b3-spanid": parts[1]}
    if len(parts) > 2:
        headers.update({"x-b3-flags": "1"} if parts[2] == "d" else {"x-b3-sampled": parts[2]})
    return headers


def outgoing_headers(request: Request) -> dict[str, str]:
    headers = b3_headers(request)
    user = request.cookie("user")
    if user:
        headers["end-user"] = user
    headers.update(forward_headers(request, _COPIED))
    return headers


@dataclass(frozen=True)
class Backends:
    """Where the peers are and how they are called."""

    details: str
    reviews: str
    ratings: str
    peers: Peers
    flood_factor: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, peers: Peers) -> Backends:
        raw = env.get("FLOOD_FACTOR") or "0"
        if not raw.isdigit():
            raise SystemExit(f"productpage: environment variable FLOOD_FACTOR={raw!r}: must be a whole number >= 0")
        return cls(details=peer_url("details", env=env), reviews=peer_url("reviews", env=env),
                   ratings=peer_url("ratings", env=env), peers=peers, flood_factor=int(raw))

    def _call(self, app: str, url: str, headers: Mapping[str, str], *, attempts: int = 1) -> tuple[int, Any]:
        reply = Reply(None)
        for _ in range(attempts):
            reply = self.peers.get_json(url, headers=headers, timeout=PEER_TIMEOUT)
            if reply.status == 200:
                REQUEST_RESULTS.labels(destination_app=app, response_code=200).inc()
                return 200, reply.data
        status = reply.status or 500
        REQUEST_RESULTS.labels(destination_app=app, response_code=status).inc()
        return status, {"error": UNAVAILABLE.format(app)}

    def details_of(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return self._call("details", f"{self.details}/details/{product_id}", headers)

    def reviews_of(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return self._call("reviews", f"{self.reviews}/reviews/{product_id}", headers, attempts=REVIEWS_ATTEMPTS)

    def ratings_of(self, product_id: str, headers: Mapping[str, str]) -> tuple[int, Any]:
        return self._call("ratings", f"{self.ratings}/ratings/{product_id}", headers)

    def flood_reviews(self, product_id: str, headers: Mapping[str, str]) -> None:
        """Extra calls to reviews whose answers are dropped: load for Istio's rate limiting tasks."""
        if self.flood_factor:
            with ThreadPoolExecutor(max_workers=min(self.flood_factor, 32)) as pool:
                list(pool.map(lambda _: self.reviews_of(product_id, headers), range(self.flood_factor)))


def user_cookie(user: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    jar["user"] = user
    jar["user"]["path"] = "/"
    return jar["user"].OutputString()


def expired_user_cookie() -> str:
    return "user=; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"


def make_router(backends: Backends) -> Router:
    router = Router()
    _add_ui(router, backends)
    _add_api(router, backends)
    return router


def _add_ui(router: Router, backends: Backends) -> None:
    @router.route("/|/index.html")
    def index(_: Request) -> Response:
        return text_response(_pages.index_page(backends.details, backends.reviews, backends.ratings),
                             content_type="text/html; charset=utf-8")

    @router.route("/health")
    def health(_: Request) -> Response:
        return text_response("Product page is healthy", content_type="text/html; charset=utf-8")

    @router.route("/login", methods=("POST",))
    def login(request: Request) -> Response:
        user = request.values().get("username", "")
        return redirect(_back(request), set_cookies=[user_cookie(user)] if user else [])

    @router.route("/logout")
    def logout(request: Request) -> Response:
        return redirect(_back(request), set_cookies=[expired_user_cookie()])

    @router.route("/productpage")
    def productpage(request: Request) -> Response:
        headers = outgoing_headers(request)
        details_status, details = backends.details_of("0", headers)
        backends.flood_reviews("0", headers)
        reviews_status, reviews = backends.reviews_of("0", headers)
        page = _pages.product_page(
            product=PRODUCTS[0], details_status=details_status, details=details,
            reviews_status=reviews_status, reviews=reviews, user=request.cookie("user") or "",
        )
        return text_response(page, content_type="text/html; charset=utf-8")


def _add_api(router: Router, backends: Backends) -> None:
    @router.route("/api/v1/products")
    def products(_: Request) -> Response:
        return json_response(list(PRODUCTS))

    @router.route("/api/v1/products/([^/]+)")
    def product(request: Request) -> Response:
        status, body = backends.details_of(request.params[0], outgoing_headers(request))
        return json_response(body, status=status)

    @router.route("/api/v1/products/([^/]+)/reviews")
    def reviews(request: Request) -> Response:
        status, body = backends.reviews_of(request.params[0], outgoing_headers(request))
        return json_response(body, status=status)

    @router.route("/api/v1/products/([^/]+)/ratings")
    def ratings(request: Request) -> Response:
        status, body = backends.ratings_of(request.params[0], outgoing_headers(request))
        return json_response(body, status=status)

    @router.route("/metrics")
    def metrics(_: Request) -> Response:
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)


def _back(request: Request) -> str:
    """Where the browser came from, as the original redirects to the referrer."""
    return request.header("referer") or "/productpage"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, prog="productpage")
    backends = Backends.from_env(os.environ, peers=Peers())
    serve(make_router(backends), name="productpage", port=args.port)


if __name__ == "__main__":
    main()

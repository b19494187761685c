"""Bookinfo's details service (Istio's is Ruby): ``GET /details/<id>`` answers the book's details.

With ``ENABLE_EXTERNAL_BOOK_SERVICE=true`` the details come from the Google
Books API instead, over HTTPS, or over plain HTTP on port 80 with
``DO_NOT_ENCRYPT=true`` so that a sidecar or an egress gateway can originate
TLS (Istio's egress tasks). Either way the call honours the proxy variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from malla.samples.bookinfo._http import (
    TRACE_HEADERS,
    Peers,
    Request,
    Response,
    Router,
    forward_headers,
    json_response,
    parse_args,
    serve,
)

# One of the editions of The Comedy of Errors with Shakespeare as the single author.
EXTERNAL_ISBN = "0486424618"
EXTERNAL_TIMEOUT = 5.0
UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
_INTEGER = re.compile(r"[+-]?\d+")


def local_details(book_id: int) -> dict[str, Any]:
    return {
        "id": book_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def external_url(env: Mapping[str, str]) -> str:
    scheme = "http" if env.get("DO_NOT_ENCRYPT") == "true" else "https"
    return f"{scheme}://www.googleapis.com/books/v1/volumes?q=isbn:{EXTERNAL_ISBN}"


def details_from_volume(book_id: int, volume: Mapping[str, Any]) -> dict[str, Any]:
    """Google Books' ``volumeInfo`` in the details service's shape; KeyError/IndexError if it lacks a field."""

    def isbn(kind: str) -> str:
        return next(i["identifier"] for i in volume["industryIdentifiers"] if i["type"] == kind)

    return {
        "id": book_id,
        "author": volume["authors"][0],
        "year": volume["publishedDate"],
        "type": "paperback" if volume.get("printType") == "BOOK" else "unknown",
        "pages": volume["pageCount"],
        "publisher": volume["publisher"],
        "language": volume["language"],
        "ISBN-10": isbn("ISBN_10"),
        "ISBN-13": isbn("ISBN_13"),
    }


def make_router(*, env: Mapping[str, str], peers: Peers) -> Router:
    router = Router()
    external = env.get("ENABLE_EXTERNAL_BOOK_SERVICE") == "true"

    @router.route("/health")
    def health(_: Request) -> Response:
        return json_response({"status": "Details is healthy"})

    # Like the original's mount on /details: any path below it, the last segment is the id.
    @router.route(r"/details(?:/.*)?", methods=("GET", "POST"))
    def details(request: Request) -> Response:
        segments = [s for s in request.path.split("/") if s]
        if not _INTEGER.fullmatch(segments[-1]):
            return json_response({"error": "please provide numeric product id"}, status=400)
        book_id = int(segments[-1])
        if not external:
            return json_response(local_details(book_id))
        return _external_details(book_id, request=request, env=env, peers=peers)

    return router


def _external_details(book_id: int, *, request: Request, env: Mapping[str, str], peers: Peers) -> Response:
    # Only the tracing headers leave the mesh: cookies and credentials stay inside.
    reply = peers.get_json(external_url(env), headers=forward_headers(request, TRACE_HEADERS),
                           timeout=EXTERNAL_TIMEOUT)
    if reply.status == 200:
        try:
            return json_response(details_from_volume(book_id, reply.data["items"][0]["volumeInfo"]))
        except (KeyError, IndexError, TypeError, StopIteration):
            pass
    return json_response({"error": UNAVAILABLE}, status=400)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, prog="details")
    serve(make_router(env=os.environ, peers=Peers()), name="details", port=args.port)


if __name__ == "__main__":
    main()

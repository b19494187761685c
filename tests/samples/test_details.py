"""details: the book's details, Istio's shape; the external book service through the proxy variables."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.samples.conftest import DETAILS_JSON, FakePeer, Launcher, Service, client, free_port

GOOGLE_BOOKS = {
    "items": [{"volumeInfo": {
        "authors": ["William Shakespeare"], "publishedDate": "2002-09-01", "printType": "BOOK",
        "pageCount": 80, "publisher": "Dover Publications", "language": "en",
        "industryIdentifiers": [{"type": "ISBN_13", "identifier": "9780486424613"},
                                {"type": "ISBN_10", "identifier": "0486424618"}],
    }}]
}


@pytest.fixture(scope="module")
def details(launcher: Launcher) -> Service:
    return launcher.start("details")


def test_details_of_a_book_have_istios_fields(details: Service) -> None:
    with client() as c:
        response = c.get(f"{details.url}/details/0")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DETAILS_JSON


def test_details_take_the_id_from_the_last_path_segment(details: Service) -> None:
    with client() as c:
        assert c.get(f"{details.url}/details/7").json()["id"] == 7
        bad = c.get(f"{details.url}/details/seven")
    assert bad.status_code == 400
    assert bad.json() == {"error": "please provide numeric product id"}


def test_health_and_unknown_paths(details: Service) -> None:
    with client() as c:
        assert c.get(f"{details.url}/health").json() == {"status": "Details is healthy"}
        assert c.get(f"{details.url}/nothing-here").status_code == 404


def test_listens_on_the_port_given_as_argument_over_port_variable(launch: Launcher) -> None:
    port, ignored = free_port(), free_port()
    launch.start("details", str(port), port=port, env={"PORT": str(ignored)})
    with client() as c:
        assert c.get(f"http://127.0.0.1:{port}/details/1").json()["id"] == 1
        with pytest.raises(httpx.ConnectError):
            c.get(f"http://127.0.0.1:{ignored}/details/1")


def test_external_book_service_goes_through_the_http_proxy(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    proxy = fake_peer().answer("/books/v1/volumes", GOOGLE_BOOKS)
    details = launch.start("details", env={
        "ENABLE_EXTERNAL_BOOK_SERVICE": "true", "DO_NOT_ENCRYPT": "true", "HTTP_PROXY": proxy.url,
    })
    proxy.seen.clear()  # the launcher's health checks do not go through the proxy, but be sure
    with client() as c:
        response = c.get(f"{details.url}/details/0", headers={
            "x-request-id": "req-1", "x-b3-traceid": "a" * 32, "cookie": "user=jason",
        })
    assert response.json() == {
        "id": 0, "author": "William Shakespeare", "year": "2002-09-01", "type": "paperback", "pages": 80,
        "publisher": "Dover Publications", "language": "en",
        "ISBN-10": "0486424618", "ISBN-13": "9780486424613",
    }
    [seen] = proxy.seen
    assert seen.target == "http://www.googleapis.com/books/v1/volumes?q=isbn:0486424618"
    assert seen.headers["host"] == "www.googleapis.com"
    assert seen.headers["x-request-id"] == "req-1" and seen.headers["x-b3-traceid"] == "a" * 32
    assert "cookie" not in seen.headers


def test_external_book_service_failure_says_details_are_unavailable(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    proxy = fake_peer().answer("/books", {"error": "quota"}, status=429)
    details = launch.start("details", env={
        "ENABLE_EXTERNAL_BOOK_SERVICE": "true", "DO_NOT_ENCRYPT": "true", "http_proxy": proxy.url,
    })
    with client() as c:
        response = c.get(f"{details.url}/details/0")
    assert response.status_code == 400
    assert response.json() == {"error": "Sorry, product details are currently unavailable for this book."}

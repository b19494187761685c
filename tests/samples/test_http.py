"""The shared plumbing: routing, requests' cookies and forms, peers' URLs, ports, and bodies on the wire."""

from __future__ import annotations

import socket
import subprocess
import sys
from email.message import Message

import pytest

from malla.samples.bookinfo._http import (
    Request,
    Router,
    forward_headers,
    json_response,
    peer_url,
)
from malla.samples.bookinfo.productpage import b3_headers
from tests.samples.conftest import Launcher, client


def request(path: str = "/", *, method: str = "GET", query: str = "", body: bytes = b"", **headers: str) -> Request:
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return Request(method, path, query, message, body)


def test_router_answers_404_405_and_head_for_get_routes() -> None:
    router = Router()
    router.route("/item/([0-9]+)")(lambda r: json_response({"id": r.params[0]}))
    router.route("/form", methods=("POST",))(lambda r: json_response({}))
    assert router.dispatch(request("/item/7")).body == b'{"id":"7"}'
    assert router.dispatch(request("/item/7", method="HEAD")).status == 200
    assert router.dispatch(request("/item/x")).status == 404
    refused = router.dispatch(request("/form"))
    assert refused.status == 405 and ("Allow", "POST") in refused.headers


def test_cookie_and_form_values() -> None:
    r = request("/login", method="POST", query="next=x", body=b"username=jason&passwd=p",
                content_type="application/x-www-form-urlencoded", cookie="theme=dark; user=jason")
    assert r.cookie("user") == "jason" and r.cookie("absent") is None
    assert r.values() == {"username": "jason", "next": "x", "passwd": "p"}
    assert request("/login", query="username=bob").values() == {"username": "bob"}


def test_forward_headers_keeps_only_listed_present_headers() -> None:
    r = request(x_request_id="abc", x_other="no")
    assert forward_headers(r) == {"x-request-id": "abc"}


def test_peer_url_follows_istios_variables() -> None:
    assert peer_url("details", env={}) == "http://details:9080"
    env = {"DETAILS_HOSTNAME": "d.example", "DETAILS_SERVICE_PORT": "8080", "SERVICES_DOMAIN": "ns.svc"}
    assert peer_url("details", env=env) == "http://d.example.ns.svc:8080"


def test_b3_single_header_with_debug_flag_becomes_flags() -> None:
    assert b3_headers(request(b3="aaaa-bbbb-d")) == {"x-b3-traceid": "aaaa", "x-b3-spanid": "bbbb", "x-b3-flags": "1"}
    assert b3_headers(request(b3="0")) == {}


def test_bad_port_variable_is_refused_with_what_is_allowed() -> None:
    result = subprocess.run([sys.executable, "-m", "malla.samples.bookinfo.details"], env={"PORT": "http"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PORT='http': must be a port number from 1 to 65535" in result.stderr


def test_bad_flood_factor_is_refused_with_what_is_allowed() -> None:
    result = subprocess.run([sys.executable, "-m", "malla.samples.bookinfo.productpage"],
                            env={"FLOOD_FACTOR": "lots", "PORT": "1"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "FLOOD_FACTOR='lots': must be a whole number >= 0" in result.stderr


@pytest.fixture(scope="module")
def ratings(launcher: Launcher):
    return launcher.start("ratings")


def test_chunked_request_body_is_read(ratings) -> None:
    def chunks():
        yield b'{"Reviewer1": '
        yield b"2}"

    with client() as c:
        response = c.post(f"{ratings.url}/ratings/9", content=chunks())
    assert response.json() == {"id": 9, "ratings": {"Reviewer1": 2}}


def test_connection_is_kept_alive_across_requests(ratings) -> None:
    with client() as c:
        for _ in range(3):
            response = c.get(f"{ratings.url}/ratings/1")
            assert response.http_version == "HTTP/1.1"
            assert response.headers.get("connection", "").lower() != "close"


def test_sigterm_stops_a_service_cleanly(launch: Launcher) -> None:
    service = launch.start("details")
    service.process.terminate()
    assert service.process.wait(timeout=10) == 0


def test_absolute_form_and_double_slash_targets_keep_their_path(ratings) -> None:
    def status_line(target: str) -> bytes:
        with socket.create_connection(("127.0.0.1", ratings.port), timeout=10) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: ratings\r\nConnection: close\r\n\r\n".encode())
            return s.makefile("rb").readline()

    assert status_line("http://ratings:9080/ratings/3?x=1").startswith(b"HTTP/1.1 200")
    # Not read as a URL whose host is "ratings": the path is /ratings/3.
    assert status_line("//ratings/3").startswith(b"HTTP/1.1 200")

"""What productpage sends to its peers: tracing headers, end-user, retries, timeouts, and the proxy variables."""

from __future__ import annotations

import time
from collections.abc import Callable

from malla.samples.bookinfo._http import PROPAGATED_HEADERS
from tests.samples.conftest import DETAILS_JSON, REVIEWS_JSON, FakePeer, Launcher, client

TRACING = {
    "x-request-id": "6a1c1e9c-1b0e-4a3c-9d7e-1b8f0f4c2d11",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-sampled": "1",
    "x-ot-span-context": "ot-context",
    "x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1",
    "x-datadog-trace-id": "1234",
    "x-datadog-parent-id": "5678",
    "x-datadog-sampling-priority": "1",
    "grpc-trace-bin": "AABvbmVzIGFuZCB0d29z",
    "sw8": "1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaQ==-ZXhhbXBsZQ==",
    "user-agent": "bookinfo-test/1.0",
    "authorization": "Bearer token",
    "jwt": "a.b.c",
}


def peers(fake_peer: Callable[[], FakePeer]) -> FakePeer:
    """One fake answering for both details and reviews."""
    return fake_peer().answer("/details/", DETAILS_JSON).answer("/reviews/", REVIEWS_JSON)


def test_tracing_and_context_headers_reach_details_and_reviews(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    fake = peers(fake_peer)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews")})
    with client() as c:
        c.get(f"{productpage.url}/productpage", headers={
            **TRACING, "x-b3-parentspanid": "05e3ac9a4f6e3b90", "cookie": "user=jason", "x-not-propagated": "no",
        })
    assert sorted(fake.paths()) == ["/details/0", "/reviews/0"]
    for seen in fake.seen:
        assert {k: seen.headers.get(k) for k in TRACING} == TRACING, seen.path
        assert seen.headers["cookie"] == "user=jason"
        assert seen.headers["end-user"] == "jason"
        assert "x-not-propagated" not in seen.headers
        # The original's B3 propagator writes trace id, span id and sampling, not the parent.
        assert "x-b3-parentspanid" not in seen.headers


def test_single_b3_header_goes_on_as_b3_multi_headers(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    fake = peers(fake_peer)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews")})
    with client() as c:
        b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
        c.get(f"{productpage.url}/api/v1/products/0", headers={"b3": b3})
    [seen] = fake.seen
    assert seen.headers["x-b3-traceid"] == "80f198ee56343ba864fe8b2a57d3eff7"
    assert seen.headers["x-b3-spanid"] == "e457b5a2e4d86bd1"
    assert seen.headers["x-b3-sampled"] == "1"


def test_signed_in_user_reaches_reviews_and_ratings_as_end_user(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    ratings = fake_peer().answer("/ratings/", {"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 1}})
    reviews = launch.start("reviews", "--version", "v2", env=ratings.env_for("ratings"))
    details = launch.start("details")
    productpage = launch.start("productpage", env={**details.env_for("details"), **reviews.env_for("reviews")})
    with client() as c:
        login = c.post(f"{productpage.url}/login", data={"username": "jason"})
        html = c.get(f"{productpage.url}/productpage", headers={"x-request-id": "r-1"}).text
    assert login.headers["set-cookie"] == "user=jason; Path=/"
    assert '<span class="user">jason</span>' in html
    assert html.count('class="star star-full"') == 4  # 3 + 1 stars from the fake ratings
    [seen] = ratings.seen
    assert seen.headers["end-user"] == "jason"
    assert seen.headers["x-request-id"] == "r-1"
    assert seen.headers["cookie"] == "user=jason"


def test_anonymous_user_sends_no_end_user(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    fake = peers(fake_peer)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews")})
    with client() as c:
        c.get(f"{productpage.url}/productpage")
    assert all("end-user" not in s.headers for s in fake.seen)


def test_reviews_are_asked_twice_before_giving_up(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    fake = fake_peer().answer("/details/", DETAILS_JSON).answer("/reviews/", {"error": "boom"}, status=503)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews")})
    with client() as c:
        html = c.get(f"{productpage.url}/productpage").text
        api = c.get(f"{productpage.url}/api/v1/products/0/reviews")
    assert "Sorry, product reviews are currently unavailable for this book." in html
    assert api.status_code == 503
    assert fake.paths().count("/reviews/0") == 4  # two tries for the page, two for the API
    assert fake.paths().count("/details/0") == 1  # details is not retried


def test_slow_reviews_time_out_after_three_seconds_a_try(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    fake = fake_peer().answer("/details/", DETAILS_JSON).answer("/reviews/", REVIEWS_JSON, delay=12.0)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews")})
    started = time.monotonic()
    with client() as c:
        html = c.get(f"{productpage.url}/productpage").text
    assert 5.8 < time.monotonic() - started < 11.0  # two tries of 3 s, long before the fake answers
    assert "Sorry, product reviews are currently unavailable for this book." in html
    assert "Book Details" in html


def test_peers_are_reached_through_the_http_proxy_when_set(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    proxy = peers(fake_peer)
    # The default names "details" and "reviews" do not resolve here: only the proxy can reach them.
    productpage = launch.start("productpage", env={"HTTP_PROXY": proxy.url, "http_proxy": proxy.url})
    with client() as c:
        html = c.get(f"{productpage.url}/productpage", headers={"x-request-id": "via-proxy"}).text
    assert "<td>PublisherA</td>" in html and "fake one" in html
    assert sorted(s.target for s in proxy.seen) == ["http://details:9080/details/0", "http://reviews:9080/reviews/0"]
    assert {s.headers["host"] for s in proxy.seen} == {"details:9080", "reviews:9080"}
    assert all(s.headers["x-request-id"] == "via-proxy" for s in proxy.seen)


def test_services_domain_and_ports_shape_the_url(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    proxy = peers(fake_peer)
    productpage = launch.start("productpage", env={
        "HTTP_PROXY": proxy.url, "SERVICES_DOMAIN": "default.svc.cluster.local", "DETAILS_SERVICE_PORT": "80",
    })
    with client() as c:
        c.get(f"{productpage.url}/productpage")
    assert sorted(s.target for s in proxy.seen) == [
        "http://details.default.svc.cluster.local/details/0",
        "http://reviews.default.svc.cluster.local:9080/reviews/0",
    ]


def test_no_proxy_hosts_are_reached_directly(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    proxy, direct = fake_peer(), peers(fake_peer)
    productpage = launch.start("productpage", env={
        **direct.env_for("details"), **direct.env_for("reviews"),
        "HTTP_PROXY": proxy.url, "NO_PROXY": "localhost,127.0.0.1,::1",
    })
    with client() as c:
        html = c.get(f"{productpage.url}/productpage").text
    assert "<td>PublisherA</td>" in html
    assert proxy.seen == []
    assert sorted(direct.paths()) == ["/details/0", "/reviews/0"]


def test_flood_factor_sends_extra_reviews_requests(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    fake = peers(fake_peer)
    productpage = launch.start("productpage", env={**fake.env_for("details"), **fake.env_for("reviews"),
                                                   "FLOOD_FACTOR": "5"})
    with client() as c:
        c.get(f"{productpage.url}/productpage")
    assert fake.paths().count("/reviews/0") == 6


def test_propagated_header_list_is_istios() -> None:
    assert set(PROPAGATED_HEADERS) == set(TRACING) | {
        "x-b3-parentspanid", "x-b3-flags", "end-user", "cookie",
    }

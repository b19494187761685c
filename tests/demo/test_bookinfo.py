"""Istio's Bookinfo tasks, applied unchanged with `malla apply`, do what Istio's guides say.

One demo mesh (control plane, six workloads with sidecars, ingress gateway)
serves the whole module; each test applies Istio's own task files with the
real CLI and checks the product page through the gateway, as a reader of
Istio's "Request routing" and "Fault injection" tasks would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from malla.demo.bookinfo import Demo, networking_dir

pytestmark = [pytest.mark.envoy, pytest.mark.xdist_group("bookinfo-demo")]

TASK_FILES = (
    "virtual-service-all-v1.yaml",
    "virtual-service-reviews-50-v3.yaml",
    "virtual-service-reviews-jason-v2-v3.yaml",
    "virtual-service-reviews-test-v2.yaml",
    "virtual-service-ratings-test-delay.yaml",
    "virtual-service-ratings-test-abort.yaml",
    "virtual-service-reviews-v3.yaml",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = Demo(home=tmp_path_factory.mktemp("bookinfo"), gateway_port=0, usual_ports=False)
    try:
        d.start()
        yield d
    finally:
        d.stop()


def malla(demo: Demo, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MALLA_HOME=str(demo.home))
    return subprocess.run([sys.executable, "-m", "malla", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def apply(demo):
    """Apply Istio task files by name; delete them again after the test."""
    applied: list[str] = []

    def do(*names: str) -> None:
        for name in names:
            res = malla(demo, "apply", "-f", str(networking_dir() / name))
            assert res.returncode == 0, res.stderr + res.stdout
            applied.append(name)

    yield do
    for name in reversed(applied):
        malla(demo, "delete", "-f", str(networking_dir() / name))


def stars(html: str) -> str:
    if "stars-red" in html:
        return "red"
    if "stars-black" in html:
        return "black"
    return "none"


def page(demo: Demo, *, user: str | None = None, timeout: float = 15) -> httpx.Response:
    with httpx.Client(timeout=timeout) as client:
        if user:
            r = client.post(demo.product_url.replace("/productpage", "/login"), data={"username": user, "passwd": "x"})
            assert r.status_code in (200, 302, 303), r.text
        return client.get(demo.product_url)


def until(cond: Callable[[], bool], *, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def sample(demo: Demo, n: int, *, user: str | None = None) -> Counter[str]:
    return Counter(stars(page(demo, user=user).text) for _ in range(n))


def test_the_product_page_shows_details_and_reviews_through_the_gateway(demo):
    r = page(demo)
    assert r.status_code == 200
    assert "The Comedy of Errors" in r.text and "Book Details" in r.text
    assert "Book Reviews" in r.text
    # Without routing rules, reviews v1, v2 and v3 all answer.
    assert until(lambda: set(sample(demo, 12)) == {"none", "black", "red"})


def test_all_v1_sends_every_request_to_reviews_v1(demo, apply):
    apply("virtual-service-all-v1.yaml")
    assert until(lambda: set(sample(demo, 10)) == {"none"})
    assert set(sample(demo, 20)) == {"none"}


def test_reviews_50_v3_splits_between_no_stars_and_red_stars(demo, apply):
    apply("virtual-service-all-v1.yaml", "virtual-service-reviews-50-v3.yaml")
    assert until(lambda: "red" in sample(demo, 10))
    counts = sample(demo, 100)
    assert set(counts) == {"none", "red"}
    assert 30 <= counts["red"] <= 70, counts


def test_jason_sees_black_stars_and_others_red(demo, apply):
    apply("virtual-service-all-v1.yaml", "virtual-service-reviews-jason-v2-v3.yaml")
    assert until(lambda: set(sample(demo, 5, user="jason")) == {"black"} and set(sample(demo, 5)) == {"red"})
    assert set(sample(demo, 10, user="jason")) == {"black"}
    assert set(sample(demo, 10)) == {"red"}


def test_ratings_delay_for_jason_makes_reviews_unavailable(demo, apply):
    apply("virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml", "virtual-service-ratings-test-delay.yaml")
    unavailable = "Sorry, product reviews are currently unavailable for this book."
    # Istio's guide: productpage gives up on reviews (3 s timeout, one retry) before the 7 s delay ends.
    assert until(lambda: unavailable in page(demo, user="jason", timeout=30).text, timeout=60)
    other = page(demo)
    assert other.status_code == 200 and unavailable not in other.text


def test_ratings_abort_for_jason_shows_ratings_unavailable(demo, apply):
    apply("virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml", "virtual-service-ratings-test-abort.yaml")
    message = "Ratings service is currently unavailable"
    assert until(lambda: message in page(demo, user="jason").text)
    assert all(message in page(demo, user="jason").text for _ in range(5))
    assert message not in page(demo).text


def test_reviews_v3_sends_everyone_to_red_stars(demo, apply):
    apply("virtual-service-all-v1.yaml", "virtual-service-reviews-v3.yaml")
    assert until(lambda: set(sample(demo, 10)) == {"red"})
    assert set(sample(demo, 10, user="jason")) == {"red"}


def test_every_task_file_validates(demo):
    for name in TASK_FILES:
        res = malla(demo, "validate", str(networking_dir() / name))
        assert res.returncode == 0, res.stderr

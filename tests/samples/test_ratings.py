"""ratings: the stars of two reviewers, ratings posted in memory, and Istio's faulty versions."""

from __future__ import annotations

import json
import subprocess
import sys
from email.message import Message

import pytest

from malla.samples.bookinfo._http import Request
from malla.samples.bookinfo.ratings import DELAY_SECONDS, Ratings, make_router, product_id_of
from tests.samples.conftest import Launcher, Service, client


@pytest.fixture(scope="module")
def ratings(launcher: Launcher) -> Service:
    return launcher.start("ratings")


def test_ratings_of_a_product(ratings: Service) -> None:
    with client() as c:
        response = c.get(f"{ratings.url}/ratings/0")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}


def test_posted_ratings_replace_a_products_ratings(ratings: Service) -> None:
    with client() as c:
        posted = c.post(f"{ratings.url}/ratings/41", json={"Reviewer1": 1, "Reviewer2": 2})
        fetched = c.get(f"{ratings.url}/ratings/41")
        other = c.get(f"{ratings.url}/ratings/42")
    assert posted.json() == fetched.json() == {"id": 41, "ratings": {"Reviewer1": 1, "Reviewer2": 2}}
    assert other.json()["ratings"] == {"Reviewer1": 5, "Reviewer2": 4}


def test_bad_product_id_and_bad_json_are_400(ratings: Service) -> None:
    with client() as c:
        no_id = c.get(f"{ratings.url}/ratings/")
        bad_json = c.post(f"{ratings.url}/ratings/3", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert no_id.status_code == 400 and no_id.json() == {"error": "please provide numeric product ID"}
    assert bad_json.status_code == 400 and bad_json.json() == {"error": "please provide valid ratings JSON"}


def test_health(ratings: Service) -> None:
    with client() as c:
        assert c.get(f"{ratings.url}/health").json() == {"status": "Ratings is healthy"}


def test_product_id_is_read_like_parse_int() -> None:
    assert product_id_of("/ratings/12") == 12
    assert product_id_of("/ratings/12abc") == 12
    assert product_id_of("/ratings/") is None
    assert product_id_of("/ratings/abc") is None


def test_faulty_version_fails_when_the_dice_say_so() -> None:
    rolls = iter([0.3, 0.9])
    faulty = Ratings(version="v-faulty", dice=lambda: next(rolls))
    first, second = faulty.serve_get(0), faulty.serve_get(0)
    assert (first.status, json.loads(first.body)) == (503, {"error": "Service unavailable"})
    assert second.status == 200


def test_delayed_version_sleeps_seven_seconds_half_the_time() -> None:
    slept: list[float] = []
    rolls = iter([0.2, 0.8])
    delayed = Ratings(version="v-delayed", dice=lambda: next(rolls), sleep=slept.append)
    assert delayed.serve_get(0).status == 200
    assert delayed.serve_get(0).status == 200
    assert slept == [DELAY_SECONDS]


def test_unavailable_version_flips_every_minute() -> None:
    now = [1000.0]
    flapping = Ratings(version="v-unavailable", clock=lambda: now[0])
    statuses = []
    for elapsed in (0, 59, 61, 119, 121):
        now[0] = 1000.0 + elapsed
        statuses.append(flapping.serve_get(0).status)
    assert statuses == [200, 200, 503, 503, 200]
    assert flapping.healthy()


def test_unhealthy_version_fails_health_every_other_quarter_hour() -> None:
    now = [0.0]
    unhealthy = Ratings(version="v-unhealthy", clock=lambda: now[0])
    assert unhealthy.healthy() and unhealthy.serve_get(0).status == 200
    now[0] = 901.0
    assert not unhealthy.healthy() and unhealthy.serve_get(0).status == 503


def test_health_endpoint_reports_unhealthy_with_500() -> None:
    now = [0.0]
    router = make_router(Ratings(version="v-unhealthy", clock=lambda: now[0]))
    now[0] = 1000.0
    response = router.dispatch(Request("GET", "/health", "", Message()))
    assert (response.status, json.loads(response.body)) == (500, {"status": "Ratings is not healthy"})


def test_database_backed_version_is_refused_with_the_allowed_versions() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "malla.samples.bookinfo.ratings"],
        env={"SERVICE_VERSION": "v2", "PATH": ""}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "SERVICE_VERSION='v2'" in result.stderr
    assert "v1, v-faulty, v-delayed, v-unavailable, v-unhealthy" in result.stderr

"""reviews: v1 without stars, v2 black stars, v3 red stars; calls to ratings carry the request's headers."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from malla.samples.bookinfo._http import PROPAGATED_HEADERS
from tests.samples.conftest import FakePeer, Launcher, Service, client, free_port

TEXT1 = "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
TEXT2 = ("Absolutely fun and entertaining. The play lacks thematic depth when compared "
         "to other plays by Shakespeare.")


@pytest.fixture(scope="module")
def ratings(launcher: Launcher) -> Service:
    return launcher.start("ratings")


def reviews_of(service: Service, product: str = "0", **headers: str) -> dict:
    with client() as c:
        response = c.get(f"{service.url}/reviews/{product}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_v1_has_no_ratings(launcher: Launcher, ratings: Service) -> None:
    v1 = launcher.start("reviews", "--version", "v1", env={**ratings.env_for("ratings"), "HOSTNAME": "reviews-v1-x"})
    assert reviews_of(v1) == {
        "id": "0", "podname": "reviews-v1-x", "clustername": "null",
        "reviews": [{"reviewer": "Reviewer1", "text": TEXT1}, {"reviewer": "Reviewer2", "text": TEXT2}],
    }


def test_v2_has_black_stars_from_ratings(launcher: Launcher, ratings: Service) -> None:
    v2 = launcher.start("reviews", env={**ratings.env_for("ratings"), "SERVICE_VERSION": "v2"})
    body = reviews_of(v2)
    assert [r["rating"] for r in body["reviews"]] == [{"stars": 5, "color": "black"}, {"stars": 4, "color": "black"}]


def test_v3_has_red_stars_and_version_can_come_from_malla_run(launcher: Launcher, ratings: Service) -> None:
    v3 = launcher.start("reviews", env={**ratings.env_for("ratings"), "MALLA_VERSION": "v3", "CLUSTER_NAME": "east"})
    body = reviews_of(v3)
    assert [r["rating"] for r in body["reviews"]] == [{"stars": 5, "color": "red"}, {"stars": 4, "color": "red"}]
    assert body["clustername"] == "east"


def test_ratings_down_gives_the_unavailable_rating(launch: Launcher) -> None:
    v2 = launch.start("reviews", "--version", "v2",
                      env={"RATINGS_HOSTNAME": "127.0.0.1", "RATINGS_SERVICE_PORT": str(free_port())})
    body = reviews_of(v2)
    assert [r["rating"] for r in body["reviews"]] == [{"error": "Ratings service is currently unavailable"}] * 2


def test_v3_gives_up_on_ratings_after_two_and_a_half_seconds(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    slow = fake_peer().answer("/ratings/", {"id": 0, "ratings": {"Reviewer1": 1, "Reviewer2": 1}}, delay=12.0)
    v3 = launch.start("reviews", "--version", "v3", env=slow.env_for("ratings"))
    started = time.monotonic()
    body = reviews_of(v3)
    # Gave up long before the fake answered (the 10 s of black stars would also be under 12 s).
    assert 2.4 < time.monotonic() - started < 9.0
    assert body["reviews"][0]["rating"] == {"error": "Ratings service is currently unavailable"}


def test_missing_reviewer_in_ratings_shows_unavailable_for_that_reviewer(
    launch: Launcher, fake_peer: Callable[[], FakePeer]
) -> None:
    partial = fake_peer().answer("/ratings/", {"id": 0, "ratings": {"Reviewer1": 2}})
    v2 = launch.start("reviews", "--version", "v2", env=partial.env_for("ratings"))
    ratings = [r["rating"] for r in reviews_of(v2)["reviews"]]
    assert ratings == [{"stars": 2, "color": "black"}, {"error": "Ratings service is currently unavailable"}]


def test_headers_reach_ratings(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    recorder = fake_peer().answer("/ratings/", {"id": 7, "ratings": {"Reviewer1": 3, "Reviewer2": 1}})
    v2 = launch.start("reviews", "--version", "v2", env=recorder.env_for("ratings"))
    sent = {name: f"value-of-{name}" for name in PROPAGATED_HEADERS}
    reviews_of(v2, "7", **sent, **{"x-not-propagated": "no"})
    [seen] = [s for s in recorder.seen if s.path == "/ratings/7"]
    assert {k: v for k, v in seen.headers.items() if k in sent} == sent
    assert "x-not-propagated" not in seen.headers


def test_ratings_are_reached_through_the_http_proxy(launch: Launcher, fake_peer: Callable[[], FakePeer]) -> None:
    proxy = fake_peer().answer("/ratings/", {"id": 0, "ratings": {"Reviewer1": 1, "Reviewer2": 2}})
    v2 = launch.start("reviews", "--version", "v2", env={"HTTP_PROXY": proxy.url})
    body = reviews_of(v2)
    assert body["reviews"][1]["rating"] == {"stars": 2, "color": "black"}
    assert [s.target for s in proxy.seen] == ["http://ratings:9080/ratings/0"]
    assert proxy.seen[0].headers["host"] == "ratings:9080"


def test_non_numeric_id_is_not_found_and_health_answers(launcher: Launcher, ratings: Service) -> None:
    v1 = launcher.start("reviews", env=ratings.env_for("ratings"))
    with client() as c:
        assert c.get(f"{v1.url}/reviews/abc").status_code == 404
        assert c.get(f"{v1.url}/health").json() == {"status": "Reviews is healthy"}

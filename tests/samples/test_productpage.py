"""productpage against the real details, reviews and ratings: the page, the API, failures, sign-in."""

from __future__ import annotations

import re

import pytest

from tests.samples.conftest import DETAILS_JSON, Launcher, Service, client, free_port

TITLE = "The Comedy of Errors"
FULL, EMPTY = 'class="star star-full"', 'class="star star-empty"'


@pytest.fixture(scope="module")
def pages(launcher: Launcher) -> dict[str, Service]:
    """A product page in front of each reviews version, all sharing details and ratings."""
    details, ratings = launcher.spawn("details"), launcher.spawn("ratings")
    pages = {}
    for version in ("v1", "v2", "v3"):
        reviews = launcher.spawn("reviews", "--version", version, env=ratings.env_for("ratings"))
        pages[version] = launcher.spawn("productpage", env={
            **details.env_for("details"), **reviews.env_for("reviews"), **ratings.env_for("ratings"),
        })
    launcher.wait(*launcher.started)
    return pages


def page(service: Service, **headers: str) -> str:
    with client() as c:
        response = c.get(f"{service.url}/productpage", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def star_colors(html: str) -> list[str]:
    return re.findall(r'<div class="stars[^"]*" style="color: (\w+)">', html)


def test_page_shows_the_book_and_its_details(pages: dict[str, Service]) -> None:
    html = page(pages["v1"])
    assert f"<h1>{TITLE}</h1>" in html
    assert "Book Details" in html
    for value in ("1234567890", "PublisherA", "200", "paperback", "English"):
        assert f"<td>{value}</td>" in html
    assert "Book Reviews" in html and "Reviewer1" in html and "Reviewer2" in html


def test_v1_reviews_have_no_stars(pages: dict[str, Service]) -> None:
    html = page(pages["v1"])
    assert star_colors(html) == [] and FULL not in html


def test_v2_reviews_have_black_stars(pages: dict[str, Service]) -> None:
    html = page(pages["v2"])
    assert star_colors(html) == ["black", "black"]
    assert html.count(FULL) == 9 and html.count(EMPTY) == 1  # 5 and 4 stars out of 5


def test_v3_reviews_have_red_stars(pages: dict[str, Service]) -> None:
    html = page(pages["v3"])
    assert star_colors(html) == ["red", "red"]
    assert html.count(FULL) == 9


def test_ratings_down_shows_ratings_unavailable(launch: Launcher, pages: dict[str, Service]) -> None:
    reviews = launch.start("reviews", "--version", "v2",
                           env={"RATINGS_HOSTNAME": "127.0.0.1", "RATINGS_SERVICE_PORT": str(free_port())})
    productpage = launch.start("productpage", env={**reviews.env_for("reviews"), "DETAILS_HOSTNAME": "127.0.0.1",
                                                   "DETAILS_SERVICE_PORT": str(free_port())})
    html = page(productpage)
    assert html.count("Ratings service is currently unavailable") == 2
    assert "Error fetching product details" in html
    assert "Sorry, product details are currently unavailable for this book." in html


def test_reviews_down_shows_reviews_unavailable(launch: Launcher) -> None:
    productpage = launch.start("productpage", env={"REVIEWS_HOSTNAME": "127.0.0.1",
                                                   "REVIEWS_SERVICE_PORT": str(free_port())})
    html = page(productpage)
    assert "Error fetching product reviews" in html
    assert "Sorry, product reviews are currently unavailable for this book." in html
    with client() as c:
        api = c.get(f"{productpage.url}/api/v1/products/0/reviews")
    assert api.status_code == 500
    assert api.json() == {"error": "Sorry, product reviews are currently unavailable for this book."}


def test_api_products(pages: dict[str, Service]) -> None:
    with client() as c:
        response = c.get(f"{pages['v1'].url}/api/v1/products")
    assert response.headers["content-type"] == "application/json"
    [product] = response.json()
    assert product["id"] == 0 and product["title"] == TITLE
    assert product["descriptionHtml"].startswith('<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">')


def test_api_product_details_reviews_and_ratings(pages: dict[str, Service]) -> None:
    with client() as c:
        details = c.get(f"{pages['v2'].url}/api/v1/products/0")
        reviews = c.get(f"{pages['v2'].url}/api/v1/products/0/reviews")
        ratings = c.get(f"{pages['v2'].url}/api/v1/products/0/ratings")
    assert details.status_code == 200 and details.json() == DETAILS_JSON
    assert reviews.status_code == 200
    body = reviews.json()
    assert body["id"] == "0" and set(body) == {"id", "podname", "clustername", "reviews"}
    assert body["reviews"][0]["rating"] == {"stars": 5, "color": "black"}
    assert ratings.status_code == 200 and ratings.json() == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}


def test_api_passes_on_the_peers_error_status(pages: dict[str, Service]) -> None:
    with client() as c:
        details = c.get(f"{pages['v1'].url}/api/v1/products/abc")
    assert details.status_code == 400
    assert details.json() == {"error": "Sorry, product details are currently unavailable for this book."}


def test_health_index_and_metrics(pages: dict[str, Service]) -> None:
    url = pages["v1"].url
    with client() as c:
        page(pages["v1"])
        assert c.get(f"{url}/health").text == "Product page is healthy"
        index = c.get(f"{url}/").text
        metrics = c.get(f"{url}/metrics").text
    assert 'href="/productpage?u=normal"' in index and 'href="/productpage?u=test"' in index
    assert re.search(r'request_result_total\{destination_app="details",response_code="200"\} [1-9]', metrics)


def test_login_sets_the_user_cookie_and_logout_clears_it(pages: dict[str, Service]) -> None:
    url = pages["v1"].url
    with client() as c:
        login = c.post(f"{url}/login", data={"username": "jason", "passwd": "x"},
                       headers={"referer": f"{url}/productpage"})
        assert login.status_code == 302
        assert login.headers["location"] == f"{url}/productpage"
        assert login.headers["set-cookie"] == "user=jason; Path=/"
        signed_in = page(pages["v1"], cookie="user=jason")
        logout = c.get(f"{url}/logout")
        wrong_method = c.get(f"{url}/login")
    assert '<span class="user">jason</span>' in signed_in and 'href="logout"' in signed_in
    assert 'name="username"' in page(pages["v1"])
    assert logout.status_code == 302 and logout.headers["location"] == "/productpage"
    assert logout.headers["set-cookie"].startswith("user=;") and "1970" in logout.headers["set-cookie"]
    assert wrong_method.status_code == 405

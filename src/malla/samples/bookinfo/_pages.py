"""The product page's HTML: the book, its details, its reviews with their stars, sign-in and sign-out.

Pure functions from what details and reviews answered to a page. Every value
from a peer is escaped; only the product's own description is HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

_STYLE = """
body { font-family: sans-serif; margin: 0; color: #1f2937; }
nav { background: #1f2937; color: #fff; padding: 12px 24px; display: flex; justify-content: space-between; }
nav a, nav span { color: #fff; margin-left: 12px; }
main, section.reviews > div { max-width: 60rem; margin: 0 auto; padding: 16px 24px; }
section.reviews { background: #eef2fb; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #d1d5db; padding: 4px 12px; text-align: left; }
.error { color: #dc2626; }
.review { margin: 16px 0; }
.stars { font-size: 1.3em; }
"""
_DETAIL_COLUMNS = (("ISBN-10", "ISBN-10"), ("Publisher", "publisher"), ("Pages", "pages"),
                   ("Type", "type"), ("Language", "language"))


def _document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _text(data: Any, key: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    return "" if value is None else escape(str(value))


def _nav(user: str) -> str:
    if user:
        account = f'<span class="user">{escape(user)}</span><a href="logout">Sign out</a>'
    else:
        account = (
            '<form method="post" action="login" name="login_form">'
            '<input name="username" placeholder="Username" required> '
            '<input name="passwd" type="password" placeholder="Password"> '
            '<button type="submit">Sign in</button></form>'
        )
    return f'<nav><strong>BookInfo Sample</strong><div>{account}</div></nav>'


def _details(status: int, details: Any) -> str:
    if status != 200:
        return ('<h4 class="error">Error fetching product details</h4>'
                f'<p class="details-error">{_text(details, "error")}</p>')
    heads = "".join(f"<th>{escape(h)}</th>" for h, _ in _DETAIL_COLUMNS)
    cells = "".join(f"<td>{_text(details, key)}</td>" for _, key in _DETAIL_COLUMNS)
    return (f'<h4>Book Details</h4>\n<table class="details"><thead><tr>{heads}</tr></thead>'
            f"<tbody><tr>{cells}</tr></tbody></table>")


def _stars(rating: Any) -> str:
    if not isinstance(rating, Mapping):
        return ""
    stars = rating.get("stars")
    if isinstance(stars, int) and stars:
        full = '<span class="star star-full">&#9733;</span>' * max(stars, 0)
        empty = '<span class="star star-empty">&#9734;</span>' * max(5 - stars, 0)
        color = escape(str(rating.get("color", "")))
        return f'<div class="stars stars-{color}" style="color: {color}">{full}{empty}</div>'
    if rating.get("error"):
        return f'<p class="error rating-error">{_text(rating, "error")}</p>'
    return ""


def _review(review: Any, served_by: str) -> str:
    return (f'<div class="review">{_stars(review.get("rating") if isinstance(review, Mapping) else None)}'
            f'<blockquote>"{_text(review, "text")}"</blockquote>'
            f'<div class="reviewer"><strong>{_text(review, "reviewer")}</strong></div>'
            f'<div class="served-by">Reviews served by: {served_by}</div></div>')


def _reviews(status: int, reviews: Any) -> str:
    if status != 200:
        return ('<h4 class="error">Error fetching product reviews</h4>'
                f'<p class="reviews-error">{_text(reviews, "error")}</p>')
    served_by = _text(reviews, "podname")
    if isinstance(reviews, Mapping) and reviews.get("clustername") not in (None, "null"):
        served_by += f" on cluster {_text(reviews, 'clustername')}"
    items = reviews.get("reviews") if isinstance(reviews, Mapping) else None
    body = "\n".join(_review(r, served_by) for r in items) if isinstance(items, list) else ""
    return f"<h4>Book Reviews</h4>\n{body}"


def product_page(*, product: Mapping[str, Any], details_status: int, details: Any,
                 reviews_status: int, reviews: Any, user: str) -> str:
    body = (
        f"{_nav(user)}\n<main>\n<h1>{escape(product['title'])}</h1>\n"
        f'<p class="description">{product["descriptionHtml"]}</p>\n'
        f"{_details(details_status, details)}\n</main>\n"
        f'<section class="reviews"><div>\n{_reviews(reviews_status, reviews)}\n</div></section>'
    )
    return _document("Simple Bookstore App", body)


def index_page(details: str, reviews: str, ratings: str) -> str:
    """The welcome page: the services behind the product page and links to it."""
    rows = (("details", f"{details}/details"), ("reviews", f"{reviews}/reviews"), ("ratings", f"{ratings}/ratings"))
    table = "".join(f"<tr><td>{escape(name)}</td><td>{escape(url)}</td></tr>" for name, url in rows)
    body = (
        "<main><h3>Hello! This is Bookinfo, a small bookstore made of four services: this product page "
        "and the ones it calls.</h3>\n"
        f'<table class="services"><thead><tr><th>service</th><th>called at</th></tr></thead>'
        f"<tbody>{table}</tbody></table>\n"
        "<h4>Open the product page as a normal user or as a tester:</h4>\n"
        '<p><a href="/productpage?u=normal">Normal user</a></p>\n'
        '<p><a href="/productpage?u=test">Test user</a></p></main>'
    )
    return _document("Simple Bookstore App", body)

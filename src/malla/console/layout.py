"""The console's page frame and small HTML helpers (server-rendered, no template engine).

Every page shares one header with the console's sections; values always go
through ``esc``. Scripts are served from ``/console/static`` (Cytoscape.js
is shipped in ``static/vendor``; nothing is fetched from the internet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

SECTIONS = (
    ("graph", "Graph", "/console/graph"),
    ("workloads", "Workloads", "/console/workloads"),
    ("services", "Services", "/console/services"),
    ("proxies", "Proxies", "/console/proxies"),
    ("config", "Istio Config", "/console/config"),
    ("traces", "Traces", "/console/traces"),
)
STATIC = "/console/static"


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def page(*, title: str, active: str, body: str, scripts: Sequence[str] = (), data: dict[str, str] | None = None) -> str:
    current = ' class="active"'
    nav = "".join(
        f'<a href="{href}"{current if key == active else ""}>{esc(label)}</a>' for key, label, href in SECTIONS
    )
    attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in sorted((data or {}).items()))
    tags = "".join(f'<script src="{STATIC}/{esc(s)}"></script>' for s in scripts)
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} - malla</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{STATIC}/console.css"></head>'
        f'<body{attrs}><header class="masthead"><a class="brand" href="/console/graph">malla</a>'
        f"<nav>{nav}</nav></header>"
        f'<main><h1>{esc(title)}</h1>{body}</main>{tags}</body></html>'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, id_: str = "", empty: str = "Nothing yet.") -> str:
    """Cells are HTML already (escape them with ``esc``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{esc(empty)}</td></tr>'
    ident = f' id="{esc(id_)}"' if id_ else ""
    return f'<table class="grid"{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def health_badge(status: str) -> str:
    label = {"NA": "No traffic"}.get(status, status)
    return badge(label, f"health-{status.lower()}")


def link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def number(value: float | None, *, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"

"""Zipkin v2 spans kept in SQLite (``sqlite3`` from the standard library), and the queries of Zipkin's API.

In: spans as Zipkin's v2 JSON describes them (``traceId``, ``id``,
``parentId``, ``name``, ``kind``, ``timestamp`` and ``duration`` in
microseconds, ``localEndpoint.serviceName``, ``tags``...). They are checked
(``check_spans``: a wrong span names its index and field), normalized as
Zipkin does (lower-case ids, service and span names; a 128-bit trace id
whose high half is zero is its 64-bit id) and stored as given, one row per
span with the columns the queries use. Out: traces, service and span names,
the dependency links between services.

Retention: at most ``max_spans`` spans; the oldest received go first.
One connection, used under a lock from any thread (the API's worker
threads); WAL keeps readers from waiting on the writer.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HEX = re.compile(r"^[0-9a-f]+$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    service TEXT,
    remote_service TEXT,
    name TEXT,
    kind TEXT NOT NULL DEFAULT '',
    ts INTEGER,
    duration INTEGER,
    error INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id, kind, service)
);
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, ts);
CREATE INDEX IF NOT EXISTS spans_by_ts ON spans (ts);
"""


class SpanError(ValueError):
    """A span that is not Zipkin v2 JSON; the message names its index and field."""


def normalize_trace_id(value: str) -> str:
    """Zipkin's rule: lower case, 16 or 32 hex digits; a 128-bit id with a zero high half is its low half."""
    text = value.strip().lower()
    if not text or len(text) > 32 or not _HEX.match(text):
        raise SpanError(f"traceId {value!r}: must be 16 or 32 hex characters")
    text = text.rjust(16 if len(text) <= 16 else 32, "0")
    return text[16:] if len(text) == 32 and text.startswith("0" * 16) else text


def _span_id(value: Any, *, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 16 or not _HEX.match(value.lower()):
        raise SpanError(f"{where}: must be 1 to 16 hex characters, got {value!r}")
    return value.lower().rjust(16, "0")


def check_spans(payload: Any) -> list[dict[str, Any]]:
    """Zipkin v2 JSON (a list of spans) -> normalized spans; SpanError names the first problem."""
    if not isinstance(payload, list):
        raise SpanError("the body must be a JSON list of spans (Zipkin v2), got " + type(payload).__name__)
    out = []
    for index, span in enumerate(payload):
        where = f"span[{index}]"
        if not isinstance(span, dict):
            raise SpanError(f"{where}: must be an object")
        try:
            trace_id = normalize_trace_id(str(span.get("traceId", "")))
        except SpanError as exc:
            raise SpanError(f"{where}.{exc}") from None
        normalized = dict(span, traceId=trace_id, id=_span_id(span.get("id"), where=f"{where}.id"))
        if span.get("parentId"):
            normalized["parentId"] = _span_id(span["parentId"], where=f"{where}.parentId")
        for key in ("timestamp", "duration"):
            if key in span and (not isinstance(span[key], int) or span[key] < 0):
                raise SpanError(f"{where}.{key}: must be a non-negative integer (microseconds)")
        for key in ("localEndpoint", "remoteEndpoint"):
            endpoint = span.get(key)
            if isinstance(endpoint, dict) and isinstance(endpoint.get("serviceName"), str):
                normalized[key] = dict(endpoint, serviceName=endpoint["serviceName"].lower())
        if isinstance(span.get("name"), str):
            normalized["name"] = span["name"].lower()
        out.append(normalized)
    return out


@dataclass(frozen=True)
class TraceQuery:
    """``GET /api/v2/traces`` parameters; times in microseconds."""

    service: str | None = None
    remote_service: str | None = None
    span_name: str | None = None
    tags: Mapping[str, str | None] | None = None  # annotationQuery: key=value, or key alone
    min_duration: int | None = None
    max_duration: int | None = None
    end_ts: int | None = None
    lookback: int | None = None
    limit: int = 10


class SpanStore:
    def __init__(self, path: Path, *, max_spans: int = 200_000) -> None:
        self.path = Path(path)
        self.max_spans = max_spans
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._inserted = 0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def add(self, payload: Any) -> int:
        """Store Zipkin v2 JSON spans (checked and normalized first: SpanError stores nothing)."""
        rows = [_row(s) for s in check_spans(payload)]
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.execute("COMMIT")
            self._inserted += len(rows)
            if self._inserted >= 1000:
                self._inserted = 0
                self._prune(db)
        return len(rows)

    def _prune(self, db: sqlite3.Connection) -> None:
        excess = db.execute("SELECT COUNT(*) FROM spans").fetchone()[0] - self.max_spans
        if excess > 0:
            db.execute("DELETE FROM spans WHERE rowid IN (SELECT rowid FROM spans ORDER BY rowid LIMIT ?)", (excess,))

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn().execute(sql, tuple(params)).fetchall()

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT body FROM spans WHERE trace_id = ? ORDER BY ts, span_id",
                           (normalize_trace_id(trace_id),))
        return [json.loads(body) for (body,) in rows]

    def services(self) -> list[str]:
        return [s for (s,) in self._query("SELECT DISTINCT service FROM spans WHERE service IS NOT NULL ORDER BY 1")]

    def remote_services(self, service: str) -> list[str]:
        rows = self._query("SELECT DISTINCT remote_service FROM spans WHERE service = ? AND remote_service IS NOT NULL"
                           " ORDER BY 1", (service.lower(),))
        return [r for (r,) in rows]

    def span_names(self, service: str) -> list[str]:
        rows = self._query("SELECT DISTINCT name FROM spans WHERE service = ? AND name IS NOT NULL ORDER BY 1",
                           (service.lower(),))
        return [n for (n,) in rows]

    def traces(self, query: TraceQuery, *, now_us: int) -> list[list[dict[str, Any]]]:
        where, params = _trace_filter(query, now_us=now_us)
        ids = self._query(
            f"SELECT trace_id, MAX(ts) AS last FROM spans WHERE {' AND '.join(where)} "
            "GROUP BY trace_id ORDER BY last DESC LIMIT ?",
            # Tags are matched on whole traces after the query: look further so the limit still fills.
            [*params, max(1, query.limit) * (20 if query.tags else 1)],
        )
        traces = [self.trace(trace_id) for trace_id, _ in ids]
        if query.tags:
            traces = [t for t in traces if _has_tags(t, query.tags)]
        return traces[: max(1, query.limit)]

    def dependencies(self, *, end_ts_us: int, lookback_us: int) -> list[dict[str, Any]]:
        """Links between services: a span of one whose parent span belongs to another (Zipkin's links)."""
        rows = self._query(
            "SELECT parent.service, child.service, COUNT(*), SUM(child.error) FROM spans AS child "
            "JOIN spans AS parent ON parent.trace_id = child.trace_id AND parent.span_id = child.parent_id "
            "WHERE child.ts BETWEEN ? AND ? AND parent.service IS NOT NULL AND child.service IS NOT NULL "
            "AND parent.service != child.service GROUP BY 1, 2 ORDER BY 1, 2",
            (end_ts_us - lookback_us, end_ts_us),
        )
        return [{"parent": p, "child": c, "callCount": n, "errorCount": int(e or 0)} for p, c, n, e in rows]


def _row(span: Mapping[str, Any]) -> tuple[Any, ...]:
    local = span.get("localEndpoint") or {}
    remote = span.get("remoteEndpoint") or {}
    tags = span.get("tags") or {}
    return (
        span["traceId"], span["id"], span.get("parentId"), local.get("serviceName"), remote.get("serviceName"),
        span.get("name"), span.get("kind") or "", span.get("timestamp"), span.get("duration"),
        int("error" in tags), json.dumps(span, separators=(",", ":"), sort_keys=True),
    )


def _trace_filter(query: TraceQuery, *, now_us: int) -> tuple[list[str], list[Any]]:
    end = query.end_ts if query.end_ts is not None else now_us
    lookback = query.lookback if query.lookback is not None else 86_400_000_000
    where, params = ["ts BETWEEN ? AND ?"], [end - lookback, end]
    for column, value in (("service", query.service), ("remote_service", query.remote_service),
                          ("name", query.span_name)):
        if value:
            where.append(f"{column} = ?")
            params.append(value.lower())
    if query.min_duration is not None:
        where.append("duration >= ?")
        params.append(query.min_duration)
    if query.max_duration is not None:
        where.append("duration <= ?")
        params.append(query.max_duration)
    return where, params


def _has_tags(trace: list[dict[str, Any]], wanted: Mapping[str, str | None]) -> bool:
    """Every key (=value) is a tag, or an annotation value, of some span of the trace."""
    for key, value in wanted.items():
        if not any(
            (key in (s.get("tags") or {}) and (value is None or s["tags"][key] == value))
            or (value is None and any(a.get("value") == key for a in s.get("annotations") or ()))
            for s in trace
        ):
            return False
    return True


def parse_annotation_query(text: str) -> dict[str, str | None]:
    """Zipkin's ``annotationQuery``: ``error and http.method=GET`` -> {"error": None, "http.method": "GET"}."""
    out: dict[str, str | None] = {}
    for term in (t.strip() for t in re.split(r"\s+and\s+", text.strip()) if t.strip()):
        key, sep, value = term.partition("=")
        out[key.strip()] = value.strip() if sep else None
    return out

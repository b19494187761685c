"""Property-based: no input, however broken, crashes the loader; it only gives clean errors."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from malla.config.parse import parse_text
from tests.conformance import SAMPLES, VALIDATION_DATASET


def _corpus() -> list[dict]:
    docs = []
    y = YAML(typ="safe", pure=True)
    for root in (VALIDATION_DATASET, SAMPLES / "bookinfo" / "networking"):
        for p in sorted(Path(root).glob("*.yaml")):
            docs.extend(d for d in y.load_all(p.read_text()) if isinstance(d, dict))
    return docs


CORPUS = _corpus()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["1.5s", "-1s", "0", "*", "", "http", "1h30m", "a(b", "65536"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _check(result) -> None:
    for d in result.diagnostics:
        assert d.level in ("error", "warning", "info")
        assert isinstance(d.message, str) and d.message
        d.format()
        d.to_json()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_crashes(text):
    _check(parse_text(text, path="fuzz.yaml"))


def _mutate(doc: dict, path: list, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node, key=str)[step % len(node)]]
        elif isinstance(node, list) and node:
            node = node[step % len(node)]
        else:
            break
    if isinstance(node, dict) and node:
        node[sorted(node, key=str)[path[-1] % len(node)]] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(CORPUS))), st.lists(st.integers(0, 50), min_size=1, max_size=7), values)
def test_mutated_istio_documents_never_crash(index, path, value):
    import json

    doc = _mutate(CORPUS[index], path, value)
    try:
        text = json.dumps(doc)
    except (TypeError, ValueError):
        return
    _check(parse_text(text, path="fuzz.json"))
    y = YAML(typ="safe", pure=True)
    import io

    buf = io.StringIO()
    y.dump(doc, buf)
    _check(parse_text(buf.getvalue(), path="fuzz.yaml"))

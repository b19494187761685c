"""Generated Envoy config compared with reviewed golden files (``pytest --update-goldens`` rewrites them)."""

import json

import pytest

from tests.pilot.golden import CASES, as_json, golden_path, load_case, render


@pytest.mark.parametrize("case", CASES)
def test_generated_config_matches_golden(case, update_goldens):
    for proxy, resources in load_case(case):
        path = golden_path(case, proxy)
        actual = as_json(resources)
        if update_goldens:
            path.write_text(render(actual))
            continue
        assert path.exists(), f"{path} is missing: run pytest tests/pilot --update-goldens and review it"
        expected = json.loads(path.read_text())
        for kind in ("clusters", "endpoints", "listeners", "routes"):
            assert sorted(actual.get(kind, {})) == sorted(expected.get(kind, {})), (
                f"{case}/{proxy.id}: {kind} names differ"
            )
            for name, body in actual.get(kind, {}).items():
                assert body == expected[kind][name], f"{case}/{proxy.id}: {kind} {name} differs from the golden file"


def test_every_case_has_a_proxy():
    assert CASES
    for case in CASES:
        assert load_case(case), f"golden/{case}/input.yaml declares no test.malla.dev/v1 Proxy"

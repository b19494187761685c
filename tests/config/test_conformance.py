"""Istio's own YAML loads unchanged: every Istio document is valid, Kubernetes ones are kept aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from malla.api.kinds import BY_GROUP_KIND
from malla.config.files import load_paths
from tests.conformance import SAMPLES, VALIDATION_DATASET


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.parametrize("path", _files(VALIDATION_DATASET), ids=lambda p: p.name)
def test_validation_dataset_document_is_valid(path):
    result, _ = load_paths([str(path)])
    assert result.errors == [], "\n".join(d.format() for d in result.errors)
    assert result.configs, f"{path.name} gave no Istio resource"


@pytest.mark.parametrize("path", _files(SAMPLES), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_sample_file_loads_without_errors(path):
    result, _ = load_paths([str(path)])
    assert result.errors == [], "\n".join(d.format() for d in result.errors)
    assert result.documents == len(result.configs) + len(result.kube)


def test_every_kind_and_version_of_the_dataset_is_served():
    """The dataset has one file per kind and version: all of them must map to a kind malla knows."""
    seen = set()
    for path in _files(VALIDATION_DATASET):
        result, _ = load_paths([str(path)])
        seen.update((c.group, c.kind, c.version) for c in result.configs)
    for (group, kind), info in BY_GROUP_KIND.items():
        for version in info.versions:
            if (VALIDATION_DATASET / f"{group.split('.')[0]}-{version}-{kind}.yaml").exists():
                assert (group, kind, version) in seen


def test_samples_hold_kubernetes_objects_and_all_are_kept_aside():
    result, _ = load_paths([str(SAMPLES)])
    assert result.errors == []
    kinds = {k.kind for k in result.kube}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    assert len(result.configs) > 20

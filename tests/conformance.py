"""Where Istio's own YAML lives for the tests (../shared/conformance/istio)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def conformance_dir() -> Path:
    """The conformance corpus: $MALLA_CONFORMANCE, else ../shared beside the checkout."""
    env = os.environ.get("MALLA_CONFORMANCE")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared" / "conformance" / "istio", ROOT / "shared" / "conformance" / "istio"]
    for c in candidates:
        if c.is_dir():
            return c
    raise RuntimeError(
        "Istio's conformance YAML was not found: expected ../shared/conformance/istio beside the checkout "
        "(or set MALLA_CONFORMANCE)"
    )


CONFORMANCE = conformance_dir()
VALIDATION_DATASET = CONFORMANCE / "validation-dataset"
SAMPLES = CONFORMANCE / "samples"
ANALYZER_TESTDATA = CONFORMANCE / "analyzer-testdata"

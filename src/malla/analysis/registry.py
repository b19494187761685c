"""The analyzer type: Istio's name, a description, the messages it may emit, and its check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from malla.analysis.context import AnalysisContext
from malla.analysis.messages import code_of

Check = Callable[[AnalysisContext], None]


@dataclass(frozen=True)
class Analyzer:
    """One cross-resource check, named as istioctl names it (``virtualservice.GatewayAnalyzer``)."""

    name: str
    description: str
    messages: tuple[str, ...]  # Istio message names, e.g. "ReferencedResourceNotFound"
    run: Check

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code_of(m) for m in self.messages)


def analyzer(name: str, description: str, *messages: str) -> Callable[[Check], Analyzer]:
    """Declare a check function as an analyzer."""

    def wrap(fn: Check) -> Analyzer:
        return Analyzer(name=name, description=description, messages=messages, run=fn)

    return wrap

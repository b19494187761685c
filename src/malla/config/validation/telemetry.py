"""Semantic rules of Telemetry, as Istio's validation webhook applies them.

Provider references need a name; tracing samples 0..100 percent and each
custom tag takes its value from exactly one source; metric tag overrides
either upsert a value or remove a tag; access log filters must be CEL
expressions. Istio handles only one tracing entry with one provider: more
is a warning.

Istio checks filters with the CEL parser; malla has no CEL library, so
``cel_syntax_problem`` catches what usually goes wrong (unbalanced
brackets, unterminated strings, '=' for '==', a dangling operator).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from malla.api.telemetry.telemetry import AccessLogging, CustomTag, Metrics, MetricsOverrides, ProviderRef, Telemetry, Tracing
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_non_negative_duration, join
from malla.config.validation.common_selectors import check_selection
from malla.telemetry import metric_overrides
from malla.telemetry.access_logging import ACCESS_LOG_PROVIDERS
from malla.telemetry.tracing import TRACING_PROVIDERS

# The value each custom tag source must carry.
_TAG_SOURCES = {"literal": "value", "environment": "name", "header": "name", "formatter": "value"}
# Prometheus label names: what a new metric dimension may be called.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def validate(spec: Telemetry, ctx: ValidationContext) -> Iterable[Finding]:
    findings = Findings()
    check_selection(findings, selector=spec.selector, target_ref=spec.target_ref, target_refs=spec.target_refs)
    if len(spec.tracing) > 1:
        findings.warning("spec.tracing", "only one tracing entry per Telemetry is supported; merge the entries into one")
    for i, tracing in enumerate(spec.tracing):
        _check_tracing(tracing, findings, path=join("spec.tracing", i))
    for i, metrics in enumerate(spec.metrics):
        _check_metrics(metrics, findings, path=join("spec.metrics", i))
    for i, logging in enumerate(spec.access_logging):
        _check_access_logging(logging, findings, path=join("spec.accessLogging", i))
    return findings


def _check_providers(
    providers: list[ProviderRef], findings: Findings, *, path: str, known: tuple[str, ...] = (), what: str = "",
    used: int | None = None,
) -> None:
    """``used``: how many of the providers are used (tracing uses only the first); the others are not judged."""
    for k, provider in enumerate(providers):
        if not provider.name:
            findings.error(
                join(path, k, "name"),
                "provider name is required: the name of a provider in MeshConfig extensionProviders",
            )
        elif known and (used is None or k < used) and provider.name.lower() not in known:
            findings.warning(
                join(path, k, "name"),
                f"malla has no {what} provider {provider.name!r}, so this entry configures no {what}: "
                f"use {' or '.join(repr(n) for n in known)}",
            )


def _check_tracing(tracing: Tracing, findings: Findings, *, path: str) -> None:
    providers_path = join(path, "providers")
    if len(tracing.providers) > 1:
        findings.warning(providers_path, "only one tracing provider per entry is supported; keep one")
    _check_providers(tracing.providers, findings, path=providers_path, known=TRACING_PROVIDERS, what="tracing",
                     used=1)
    percentage = tracing.random_sampling_percentage
    if percentage is not None and not 0.0 <= percentage <= 100.0:
        findings.error(
            join(path, "randomSamplingPercentage"),
            f"randomSamplingPercentage must be between 0.0 and 100.0, got {percentage}",
        )
    for name, tag in tracing.custom_tags.items():
        _check_custom_tag(name, tag, findings, path=f"{join(path, 'customTags')}[{name}]")


def _check_custom_tag(name: str, tag: CustomTag, findings: Findings, *, path: str) -> None:
    if not name:
        findings.error(path, "custom tag name may not be empty")
    sources = [source for source in _TAG_SOURCES if getattr(tag, source) is not None]
    choices = "literal, environment, header or formatter"
    if not sources:
        findings.error(path, f"custom tag {name!r} needs exactly one of {choices}")
    elif len(sources) > 1:
        findings.error(path, f"custom tag {name!r} sets {' and '.join(sources)}; set exactly one of {choices}")
    for source in sources:
        required = _TAG_SOURCES[source]
        if not getattr(getattr(tag, source), required):
            findings.error(join(path, source, required), f"{source} tag {required} may not be empty")


def _check_metrics(metrics: Metrics, findings: Findings, *, path: str) -> None:
    _check_providers(metrics.providers, findings, path=join(path, "providers"), known=(metric_overrides.PROVIDER,),
                     what="metrics")
    problem = check_non_negative_duration(metrics.reporting_interval, "reportingInterval")
    if problem:
        findings.error(join(path, "reportingInterval"), problem)
    for k, override in enumerate(metrics.overrides):
        _check_override(override, findings, path=join(path, "overrides", k))


def _check_override(override: MetricsOverrides, findings: Findings, *, path: str) -> None:
    match = override.match
    if match is not None:
        if match.metric is not None and match.custom_metric is not None:
            findings.error(join(path, "match"), "metric and customMetric are alternatives; set only one of them")
        if match.custom_metric == "":
            findings.error(join(path, "match", "customMetric"), "customMetric may not be empty: name the metric")
    for name, tag in override.tag_overrides.items():
        tag_path = f"{join(path, 'tagOverrides')}[{name}]"
        operation = tag.operation or "UPSERT"
        if not name:
            findings.warning(tag_path, "tag override name may not be empty")
        elif operation == "UPSERT" and not _LABEL_NAME.fullmatch(name):
            findings.warning(
                tag_path,
                f"tag name {name!r} is not a valid Prometheus label name (letters, digits and '_', not starting with a digit)",
            )
        if operation == "UPSERT" and not tag.value:
            findings.error(
                join(tag_path, "value"),
                "value must be set when operation is UPSERT (the default): a CEL expression such as request.host",
            )
        elif operation == "REMOVE" and tag.value:
            findings.error(join(tag_path, "value"), "value may only be set when operation is UPSERT; remove it")
    for where, message in metric_overrides.override_warnings(override):  # what malla's metrics cannot honour
        findings.warning(f"{path}.{where}", message)


def _check_access_logging(logging: AccessLogging, findings: Findings, *, path: str) -> None:
    _check_providers(logging.providers, findings, path=join(path, "providers"), known=ACCESS_LOG_PROVIDERS,
                     what="access logging")
    if logging.filter is not None:
        problem = cel_syntax_problem(logging.filter.expression or "")
        if problem:
            findings.error(join(path, "filter", "expression"), f"filter must be a valid CEL expression: {problem}")


_CLOSING = {")": "(", "]": "[", "}": "{"}


def cel_syntax_problem(expression: str) -> str | None:
    """The first syntax mistake of a CEL expression that a bracket/string scan can see."""
    text = expression.rstrip()
    if not text.strip():
        return "the expression is empty; write one such as response.code >= 400"
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "'\"":
            end = _string_end(text, i)
            if end < 0:
                return f"unterminated string starting at column {i + 1}"
            i = end
            continue
        if char in "([{":
            stack.append((char, i))
        elif char in _CLOSING:
            if not stack or stack[-1][0] != _CLOSING[char]:
                return f"unbalanced {char!r} at column {i + 1}"
            stack.pop()
        elif char == "=" and text[i + 1 : i + 2] != "=" and (i == 0 or text[i - 1] not in "=!<>"):
            return f"'=' at column {i + 1} is not a CEL operator; compare with =="
        i += 1
    if stack:
        return f"{stack[-1][0]!r} at column {stack[-1][1] + 1} is never closed"
    if text[-1] in "&|=<>!+-*/%?:.,":
        return f"the expression ends with {text[-1]!r}: an operator needs a right-hand side"
    return None


def _string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at ``start``, or -1 if it never closes."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(delimiter, i):
            return i + len(delimiter)
        if text[i] == "\n" and len(delimiter) == 1:
            return -1
        i += 1
    return -1

"""WorkloadGroup rules, as Istio's validation webhook and CRD schema apply them.

A group needs a template; its metadata labels must be valid Kubernetes
labels; the template obeys the WorkloadEntry schema except that its address
may be empty (it is filled in when a workload registers); and the readiness
probe has non-negative timings and exactly one handler whose fields make
sense.
"""

from __future__ import annotations

from collections.abc import Iterable

from malla.api.networking.workload_group import HTTPHealthCheckConfig, ReadinessProbe, WorkloadGroup
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_http_header_name, join
from malla.config.validation.common_ports import check_port
from malla.config.validation.common_selectors import check_labels
from malla.config.validation.workload_entry import check_entry_shape, check_service_account

_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
_TIMINGS = ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold")


def _check_probe_port(port: int | None, path: str, f: Findings, *, required: bool = True) -> None:
    if port is None or port == 0:
        if required:
            f.error(path, "port is required (1-65535)")
        else:
            f.warning(path, "no port given: the probe has nothing to connect to; set a port (1-65535)")
        return
    problem = check_port(port)
    if problem:
        f.error(path, problem)


def _check_http_get(http: HTTPHealthCheckConfig, path: str, f: Findings) -> None:
    _check_probe_port(http.port, join(path, "port"), f)
    if http.scheme not in (None, "", "HTTP", "HTTPS"):
        f.error(join(path, "scheme"), f"invalid scheme {http.scheme!r}: use HTTP or HTTPS")
    for i, header in enumerate(http.http_headers):
        if problem := check_http_header_name(header.name or ""):
            f.error(join(path, "httpHeaders", i, "name"), problem)


def _check_handler(probe: ReadinessProbe, f: Findings) -> None:
    handlers = [n for n, v in zip(_HANDLERS, (probe.http_get, probe.tcp_socket, probe.exec, probe.grpc)) if v]
    if len(handlers) != 1:
        found = ", ".join(handlers) if handlers else "none"
        f.error("spec.probe", f"a probe needs exactly one of {', '.join(_HANDLERS)}; found {found}")
    if probe.http_get is not None:
        _check_http_get(probe.http_get, "spec.probe.httpGet", f)
    if probe.tcp_socket is not None:
        _check_probe_port(probe.tcp_socket.port, "spec.probe.tcpSocket.port", f)
    if probe.exec is not None:
        if not probe.exec.command:
            f.error("spec.probe.exec.command", "exec.command is required: the program and its arguments")
        for i, word in enumerate(probe.exec.command):
            if not word:
                f.error(join("spec.probe.exec.command", i), "command entries must not be empty")
    if probe.grpc is not None:
        _check_probe_port(probe.grpc.port, "spec.probe.grpc.port", f, required=False)


def _check_probe(probe: ReadinessProbe | None, f: Findings) -> None:
    if probe is None:
        return
    values = (probe.initial_delay_seconds, probe.timeout_seconds, probe.period_seconds,
              probe.success_threshold, probe.failure_threshold)
    for name, value in zip(_TIMINGS, values):
        if value is not None and value < 0:
            f.error(join("spec.probe", name), f"{name} must not be negative, got {value}")
    _check_handler(probe, f)


def validate(spec: WorkloadGroup, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    if spec.metadata is not None:
        check_labels(f, spec.metadata.labels, path="spec.metadata.labels")
    if spec.template is None:
        f.error("spec.template", "template is required: the WorkloadEntry fields (ports, serviceAccount, network, "
                "...) every workload of the group gets")
    else:
        # The address is filled in by each registering workload, so it may be empty here.
        check_entry_shape(spec.template, "spec.template", f, require_address=False)
        check_service_account(spec.template.service_account, "spec.template.serviceAccount", f)
    _check_probe(spec.probe, f)
    return f

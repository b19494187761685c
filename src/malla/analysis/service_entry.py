"""ServiceEntry checks: TCP ports that need addresses (IST0134), conflicting port protocols (IST0177).

A TCP ServiceEntry port without addresses is matched on the port alone, so
it captures all traffic to that port unless DNS capture auto-allocates an
address (MeshConfig proxyMetadata) or Istio has allocated one (``status``).
"""

from __future__ import annotations

from collections import defaultdict

from malla.analysis.context import AnalysisContext, full_name
from malla.analysis.hosts import EXPORT_ALL, export_scopes
from malla.analysis.registry import analyzer
from malla.config.model import Config


def _address_allocated(se: Config) -> bool:
    status = se.raw.get("status") if isinstance(se.raw, dict) else None
    return bool(isinstance(status, dict) and status.get("addresses"))


@analyzer(
    "serviceentry.Analyzer",
    "Checks the validity of ServiceEntry",
    "ServiceEntryAddressesRequired",
)
def protocol_addresses_analyzer(ctx: AnalysisContext) -> None:
    if ctx.mesh.dns_auto_allocate:
        return
    for se in ctx.configs("ServiceEntry"):
        if se.spec.addresses or _address_allocated(se):
            continue
        for i, port in enumerate(se.spec.ports):
            if not port.protocol or port.protocol.upper() == "TCP":
                ctx.report(se, "ServiceEntryAddressesRequired", field=f"spec.ports[{i}]")


@analyzer(
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
    "Checks if multiple ServiceEntries define the same host and port with different protocols",
    "ConflictingServiceEntryProtocol",
)
def conflicting_protocol_analyzer(ctx: AnalysisContext) -> None:
    index: dict[tuple[str, str, int], list[tuple[str, Config]]] = defaultdict(list)
    for se in ctx.configs("ServiceEntry"):
        for scope in export_scopes(se.spec.export_to, se.namespace):
            for host in se.spec.hosts:
                for port in se.spec.ports:
                    index[(scope, host, port.number or 0)].append(((port.protocol or "").upper(), se))
    reported: set[str] = set()
    for (scope, host, number), entries in sorted(index.items(), key=lambda kv: kv[0]):
        if scope != EXPORT_ALL:
            # Entries exported everywhere are also visible in this namespace.
            entries = entries + index.get((EXPORT_ALL, host, number), [])
        protocols = sorted({proto for proto, _ in entries})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted({full_name(se) for _, se in entries}))
        for _, se in entries:
            if se.ref not in reported:
                reported.add(se.ref)
                ctx.report(se, "ConflictingServiceEntryProtocol", names, host, number, ", ".join(protocols), field="metadata.name")


ANALYZERS = (protocol_addresses_analyzer, conflicting_protocol_analyzer)

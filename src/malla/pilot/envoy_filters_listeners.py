"""EnvoyFilter patches of listeners: LISTENER, FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER.

As istiod's ``listener_patch``: a listener takes MERGE and REMOVE (ADD adds
one); its filter chains MERGE and REMOVE (ADD appends one); a chain's network
filters and an HTTP connection manager's HTTP filters take ADD,
INSERT_FIRST, INSERT_BEFORE, INSERT_AFTER, REPLACE, REMOVE and then MERGE.
An insert relative to a filter the match does not name goes first (BEFORE)
or last (AFTER). ``portNumber`` matches the listener's port, except on the
virtual listeners (``virtualInbound``, ``virtualOutbound``), where it
matches each filter chain's destination port. Legacy filter names in a match
(``envoy.http_connection_manager``) mean the canonical ones.

``filterClass`` on an HTTP_FILTER ADD places the filter as istiod does:
AUTHN first, AUTHZ before the first authorization filter (else before the
router), STATS right before the router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf.message import Message

from malla.config.validation.envoy_filter import DEPRECATED_FILTER_NAMES, HCM
from malla.pilot import names
from malla.pilot.envoy_filters_model import CompiledPatch, Memo, Tally
from malla.pilot.envoy_filters_values import PatchValueError, copy_of, merge_filter, merge_message
from malla.pilot.snapshot import Proxy

_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_VIRTUAL = (names.VIRTUAL_INBOUND_LISTENER, names.VIRTUAL_OUTBOUND_LISTENER)
_LIST_OPS = ("ADD", "INSERT_FIRST", "INSERT_BEFORE", "INSERT_AFTER", "REPLACE", "REMOVE")
_MERGES = ("MERGE", "MERGE_AND_REPLACE_LIST")
_AUTHZ_FILTERS = ("envoy.filters.http.rbac", "envoy.filters.http.ext_authz")
ROUTER = "envoy.filters.http.router"
F = TypeVar("F", bound=Message)


def listener_context(proxy: Proxy, listener: listener_pb2.Listener) -> str:
    if proxy.is_router:
        return "GATEWAY"
    inbound = listener.traffic_direction == base_pb2.INBOUND
    return "SIDECAR_INBOUND" if inbound or listener.name == names.VIRTUAL_INBOUND_LISTENER else "SIDECAR_OUTBOUND"


def patch_listeners(
    proxy: Proxy, listeners: dict[str, Message], patches: list[CompiledPatch], *, memo: Memo, tally: Tally
) -> dict[str, Message]:
    mine = [p for p in patches if p.apply_to in _CLASS]
    if not mine:
        return listeners
    out: dict[str, Message] = {}
    for name, listener in listeners.items():
        context = listener_context(proxy, listener)  # type: ignore[arg-type]
        fitting = [p for p in mine if p.fits(context) and not _is_listener_add(p) and listener_matches(listener, p)]
        if not fitting:
            out[name] = listener
            continue
        patched = memo.patched(listener, lambda m, ps=fitting: _patch_listener(m, ps, tally=tally))
        if patched is not None:
            out[patched.name] = patched  # type: ignore[attr-defined]
    contexts = ("ANY", "GATEWAY") if proxy.is_router else ("ANY", "SIDECAR_OUTBOUND", "SIDECAR_INBOUND")
    for p in mine:
        if _is_listener_add(p) and p.context in contexts:
            tally.hit(p)
            out[p.value.name] = copy_of(p.value)  # type: ignore[union-attr, attr-defined]
    return dict(sorted(out.items()))


def _is_listener_add(p: CompiledPatch) -> bool:
    return p.apply_to == "LISTENER" and p.operation == "ADD"


def _patch_listener(listener: Message, patches: list[CompiledPatch], *, tally: Tally) -> Message | None:
    out: listener_pb2.Listener = copy_of(listener)  # type: ignore[assignment]
    for p in patches:
        if p.apply_to != "LISTENER":
            continue
        tally.hit(p)
        if p.operation == "REMOVE":
            return None
        if p.operation in _MERGES:
            merge_message(out, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")  # type: ignore[arg-type]
        else:
            tally.skip(p, f"operation {p.operation} does not apply to a listener: use MERGE, ADD or REMOVE")
    chains = [c for c in (_patch_chain(out, fc, patches, tally=tally) for fc in out.filter_chains) if c is not None]
    for p in patches:
        if p.apply_to == "FILTER_CHAIN" and p.operation == "ADD":
            tally.hit(p)
            chains.append(copy_of(p.value))  # type: ignore[arg-type]
    del out.filter_chains[:]
    out.filter_chains.extend(chains)
    if out.HasField("default_filter_chain"):
        default = _patch_chain(out, out.default_filter_chain, patches, tally=tally)
        if default is None:
            out.ClearField("default_filter_chain")
        else:
            out.default_filter_chain.CopyFrom(default)
    return out


def _patch_chain(
    listener: listener_pb2.Listener, chain: listener_pb2.FilterChain, patches: list[CompiledPatch], *, tally: Tally
) -> listener_pb2.FilterChain | None:
    fitting = [p for p in patches if p.apply_to != "LISTENER" and chain_matches(listener, chain, p)]
    out = copy_of(chain)
    for p in fitting:
        if p.apply_to != "FILTER_CHAIN" or p.operation == "ADD":
            continue
        tally.hit(p)
        if p.operation == "REMOVE":
            return None
        if p.operation in _MERGES:
            merge_message(out, p.value, replace_lists=p.operation == "MERGE_AND_REPLACE_LIST")  # type: ignore[arg-type]
        else:
            tally.skip(p, f"operation {p.operation} does not apply to a filter chain: use MERGE, ADD or REMOVE")
    network = [p for p in fitting if p.apply_to == "NETWORK_FILTER"]
    filters = list(out.filters)
    for p in network:
        if p.operation in _LIST_OPS:
            filters = _list_op(filters, p, _network_filter_match(p), tally=tally)
    filters = [_patch_network_filter(f, fitting, tally=tally) for f in filters]
    del out.filters[:]
    out.filters.extend(filters)
    return out


def _patch_network_filter(
    network_filter: listener_pb2.Filter, patches: list[CompiledPatch], *, tally: Tally
) -> listener_pb2.Filter:
    out = network_filter
    for p in patches:
        if p.apply_to == "NETWORK_FILTER" and p.operation in _MERGES and _network_filter_match(p)(out):
            out = _merged(out, p, tally=tally)
    if out.name == HCM and out.HasField("typed_config"):
        http = [p for p in patches if p.apply_to == "HTTP_FILTER" and _network_filter_match(p)(out)]
        if http:
            out = _patch_http_filters(out, http, tally=tally)
    return out


def _merged(item: F, p: CompiledPatch, *, tally: Tally) -> F:
    if not item.HasField("typed_config"):  # type: ignore[attr-defined]
        tally.skip(p, f"filter {item.name} has no typed_config to merge into")  # type: ignore[attr-defined]
        return item
    try:
        merged = merge_filter(item, p.value)  # type: ignore[arg-type]
    except PatchValueError as exc:
        tally.skip(p, str(exc))
        return item
    tally.hit(p)
    return merged  # type: ignore[return-value]


def _patch_http_filters(network_filter: listener_pb2.Filter, patches: list[CompiledPatch], *,
                        tally: Tally) -> listener_pb2.Filter:
    manager = hcm_pb2.HttpConnectionManager()
    if not network_filter.typed_config.Unpack(manager):
        return network_filter
    filters = list(manager.http_filters)
    for p in patches:
        if p.operation == "ADD" and p.filter_class:
            filters = _add_by_class(filters, p, tally=tally)
        elif p.operation in _LIST_OPS:
            filters = _list_op(filters, p, _http_filter_match(p), tally=tally)
    for p in patches:
        if p.operation in _MERGES:
            filters = [_merged(f, p, tally=tally) if _http_filter_match(p)(f) else f for f in filters]
    del manager.http_filters[:]
    manager.http_filters.extend(filters)
    out = copy_of(network_filter)
    out.typed_config.Pack(manager)  # type: ignore[attr-defined]
    return out  # type: ignore[return-value]


def _add_by_class(filters: list[F], p: CompiledPatch, *, tally: Tally) -> list[F]:
    new: F = copy_of(p.value)  # type: ignore[arg-type, assignment]
    names_ = [f.name for f in filters]  # type: ignore[attr-defined]
    if p.filter_class == "AUTHN":
        at = 0
    elif p.filter_class == "AUTHZ":
        at = next((i for i, n in enumerate(names_) if n in _AUTHZ_FILTERS), None) or _router_index(names_)
    else:
        at = _router_index(names_)
    tally.hit(p)
    return [*filters[:at], new, *filters[at:]]


def _router_index(filter_names: list[str]) -> int:
    return filter_names.index(ROUTER) if ROUTER in filter_names else len(filter_names)


def _list_op(items: list[F], p: CompiledPatch, matches: Callable[[F], bool], *, tally: Tally) -> list[F]:
    """One ADD / INSERT_* / REPLACE / REMOVE on a list of filters; ``matches`` says which the match names."""
    named = _names_filter(p)
    new = (lambda: copy_of(p.value)) if p.value is not None else None  # type: ignore[arg-type]
    if p.operation == "ADD" or (p.operation == "INSERT_AFTER" and not named):
        tally.hit(p)
        return [*items, new()]  # type: ignore[misc]
    if p.operation == "INSERT_FIRST" or (p.operation == "INSERT_BEFORE" and not named):
        tally.hit(p)
        return [new(), *items]  # type: ignore[misc]
    if not named:
        return items  # REPLACE and REMOVE need the match to name a filter
    at = next((i for i, item in enumerate(items) if matches(item)), None)
    if at is None:
        return items
    tally.hit(p)
    if p.operation == "REMOVE":
        return [item for item in items if not matches(item)]
    if p.operation == "REPLACE":
        return [*items[:at], new(), *items[at + 1:]]  # type: ignore[misc]
    at = at + 1 if p.operation == "INSERT_AFTER" else at
    return [*items[:at], new(), *items[at:]]  # type: ignore[misc]


# --- matching ----------------------------------------------------------------------------------


def canonical_filter_name(name: str) -> str:
    """A legacy filter name's canonical one, where there is exactly one."""
    found = DEPRECATED_FILTER_NAMES.get(name, name)
    return name if " " in found else found


def listener_matches(listener: Message, p: CompiledPatch) -> bool:
    match = p.match.listener
    if match is None:
        return True
    if match.name and match.name != listener.name:  # type: ignore[attr-defined]
        return False
    if p.apply_to != "LISTENER" and listener.name in _VIRTUAL:  # type: ignore[attr-defined]
        return True  # the port is each filter chain's destination port (chain_matches)
    port = listener.address.socket_address.port_value  # type: ignore[attr-defined]
    return not match.port_number or match.port_number == port


def chain_matches(listener: listener_pb2.Listener, chain: listener_pb2.FilterChain, p: CompiledPatch) -> bool:
    match = p.match.listener
    if match is None:
        return True
    fcm = chain.filter_chain_match
    if listener.name in _VIRTUAL and match.port_number and fcm.destination_port.value != match.port_number:
        return False
    wanted = match.filter_chain
    if wanted is None:
        return True
    protocols = [a for a in (wanted.application_protocols or "").split(",") if a]
    return (
        (not wanted.name or wanted.name == chain.name)
        and (not wanted.sni or wanted.sni in fcm.server_names)
        and (not wanted.transport_protocol or wanted.transport_protocol == fcm.transport_protocol)
        and all(a in fcm.application_protocols for a in protocols)
        and (not wanted.destination_port or wanted.destination_port == fcm.destination_port.value)
    )


def _names_filter(p: CompiledPatch) -> bool:
    """Whether the match names the filter a relative operation is relative to."""
    chain = p.match.listener.filter_chain if p.match.listener is not None else None
    if chain is None or chain.filter is None:
        return False
    return p.apply_to == "NETWORK_FILTER" or chain.filter.sub_filter is not None


def _network_filter_match(p: CompiledPatch) -> Callable[[Message], bool]:
    chain = p.match.listener.filter_chain if p.match.listener is not None else None
    wanted = chain.filter.name if chain is not None and chain.filter is not None else None
    if not wanted:
        return lambda _f: True
    name = canonical_filter_name(wanted)
    return lambda f: f.name == name  # type: ignore[attr-defined]


def _http_filter_match(p: CompiledPatch) -> Callable[[Message], bool]:
    chain = p.match.listener.filter_chain if p.match.listener is not None else None
    sub = chain.filter.sub_filter if chain is not None and chain.filter is not None else None
    if sub is None or not sub.name:
        return lambda _f: True
    name = canonical_filter_name(sub.name)
    return lambda f: f.name == name  # type: ignore[attr-defined]

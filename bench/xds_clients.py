"""Simulated Envoys for the control-plane benchmarks: N ADS clients in one process, each on its own connection.

Each client keeps one stream up and re-opens it after a jittered backoff
when it drops, as Envoy does (drops are counted). It follows the request
order Envoy was seen to use (see the field notes): CDS (wildcard) -> EDS for the EDS clusters, before the CDS ACK ->
CDS ACK -> LDS -> RDS for the route names the listeners use, ACKing every
response; SotW or Delta. Node metadata is what the agent writes
(``malla.discovery.proxies.node_metadata``), so the control plane
configures each client as a sidecar. Responses are read as raw bytes, so
the byte counts are the gRPC message sizes (5 bytes of gRPC framing per
message and HTTP/2 framing come on top).

Driven over stdin/stdout, one JSON object per line:
- out ``synced``: when every client ACKed all four types once (or at the deadline);
- in ``mark SECONDS``: count from now; out ``reached`` when every client has
  had an EDS response since (or after SECONDS), with the bytes received;
- in ``quit``: close everything; out ``closed``.

Run: ``python -m bench.xds_clients --xds HOST:PORT --n N --mode sotw|delta --deadline S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from malla.discovery.proxies import node_metadata
from malla.pilot.snapshot import Proxy, XdsMode

PREFIX = "type.googleapis.com/envoy.config."
CDS, EDS = PREFIX + "cluster.v3.Cluster", PREFIX + "endpoint.v3.ClusterLoadAssignment"
LDS, RDS = PREFIX + "listener.v3.Listener", PREFIX + "route.v3.RouteConfiguration"
TYPES = (CDS, EDS, LDS, RDS)
SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

# Envoy's reconnect backoff towards the control plane in malla's bootstrap (base, max).
BACKOFF_BASE_S, BACKOFF_MAX_S = 0.25, 5.0

# Every client receives the same resources: decode each distinct one once.
_names_memo: dict[tuple[str, str], tuple[str, ...]] = {}


def _eds_names(resource: Any) -> tuple[str, ...]:
    c = cluster_pb2.Cluster.FromString(resource.value)
    if c.type != cluster_pb2.Cluster.EDS:
        return ()
    return (c.eds_cluster_config.service_name or c.name,)


def _route_names(resource: Any) -> tuple[str, ...]:
    listener = listener_pb2.Listener.FromString(resource.value)
    out = []
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.typed_config.type_url.endswith("HttpConnectionManager"):
                manager = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if manager.HasField("rds"):
                    out.append(manager.rds.route_config_name)
    return tuple(out)


def names_wanted(type_url: str, key: str, resources: list[Any]) -> tuple[str, ...]:
    """EDS names a CDS response asks for, or RDS names an LDS response asks for (memoised by ``key``)."""
    found = _names_memo.get((type_url, key))
    if found is None:
        decode = _eds_names if type_url == CDS else _route_names
        found = tuple(sorted({n for r in resources for n in decode(r)}))
        _names_memo[(type_url, key)] = found
    return found


@dataclass
class Client:
    index: int
    node: base_pb2.Node
    delta: bool
    acked: set[str] = field(default_factory=set)
    synced_at: float | None = None
    mark: float | None = None
    reached_at: float | None = None
    bytes_total: int = 0
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    drops: int = 0  # streams that ended while the benchmark still wanted them
    drop_reasons: set[str] = field(default_factory=set)


def make_node(index: int, *, mode: XdsMode) -> base_pb2.Node:
    name = f"sim{index:05d}"
    node_id = f"sidecar~127.0.0.1~{name}.default~default.svc.cluster.local"
    proxy = Proxy(id=node_id, namespace="default", labels={"app": name}, service_account=name, xds_mode=mode,
                  outbound_port=20000 + index)
    metadata = struct_pb2.Struct()
    metadata.update(node_metadata(proxy, workload_name=name))
    return base_pb2.Node(id=node_id, cluster=f"{name}.default", metadata=metadata)


class SotwDriver:
    """What one SotW client sends, response by response."""

    def __init__(self, client: Client, queue: asyncio.Queue[Any]) -> None:
        self.c, self.q = client, queue
        self.sent_node = False
        self.subscribed: dict[str, tuple[str, ...]] = {}
        self.last: dict[str, tuple[str, str]] = {}  # type -> (version, nonce) last ACKed
        self.cds_pending: tuple[str, str] | None = None

    def send(self, type_url: str, names: tuple[str, ...] = (), version: str = "", nonce: str = "") -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names, version_info=version, response_nonce=nonce)
        if not self.sent_node:
            req.node.CopyFrom(self.c.node)
            self.sent_node = True
        self.q.put_nowait(req)

    def start(self) -> None:
        self.send(CDS)

    def on_response(self, raw: bytes) -> str:
        r = discovery_pb2.DiscoveryResponse.FromString(raw)
        t, version, nonce = r.type_url, r.version_info, r.nonce
        if t == CDS:
            wanted = names_wanted(CDS, version, list(r.resources))
            self.cds_pending = (version, nonce)
            if wanted and wanted != self.subscribed.get(EDS):
                self.subscribed[EDS] = wanted
                v, n = self.last.get(EDS, ("", ""))
                self.send(EDS, wanted, v, n)
            else:
                self._ack_cds()
        elif t == EDS:
            self.last[EDS] = (version, nonce)
            self.send(EDS, self.subscribed.get(EDS, ()), version, nonce)
            self._ack_cds()
        elif t == LDS:
            self.last[LDS] = (version, nonce)
            self.send(LDS, (), version, nonce)
            wanted = names_wanted(LDS, version, list(r.resources))
            if wanted != self.subscribed.get(RDS):
                self.subscribed[RDS] = wanted
                v, n = self.last.get(RDS, ("", ""))
                self.send(RDS, wanted, v, n)
        elif t == RDS:
            self.last[RDS] = (version, nonce)
            self.send(RDS, self.subscribed.get(RDS, ()), version, nonce)
        self.c.acked.add(t)
        return t

    def _ack_cds(self) -> None:
        if self.cds_pending is None:
            return
        version, nonce = self.cds_pending
        self.cds_pending = None
        self.last[CDS] = (version, nonce)
        self.send(CDS, (), version, nonce)
        if LDS not in self.subscribed:
            self.subscribed[LDS] = ()
            self.send(LDS)


class DeltaDriver:
    """What one Delta client sends, response by response."""

    def __init__(self, client: Client, queue: asyncio.Queue[Any]) -> None:
        self.c, self.q = client, queue
        self.sent_node = False
        self.subscribed: dict[str, set[str]] = {EDS: set(), RDS: set()}
        self.clusters: dict[str, tuple[str, ...]] = {}  # cluster name -> EDS names it wants
        self.listeners: dict[str, tuple[str, ...]] = {}
        self.cds_nonce: str | None = None
        self.lds_started = False

    def send(self, type_url: str, *, subscribe: tuple[str, ...] = (), nonce: str = "") -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=subscribe, response_nonce=nonce)
        if not self.sent_node:
            req.node.CopyFrom(self.c.node)
            self.sent_node = True
        self.q.put_nowait(req)

    def start(self) -> None:
        self.send(CDS)  # legacy wildcard: no names

    def on_response(self, raw: bytes) -> str:
        r = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
        t = r.type_url
        if t == CDS:
            self._track(self.clusters, r, CDS)
            wanted = {n for names in self.clusters.values() for n in names} - self.subscribed[EDS]
            self.cds_nonce = r.nonce
            if wanted:
                self.subscribed[EDS] |= wanted
                self.send(EDS, subscribe=tuple(sorted(wanted)))
            else:
                self._ack_cds()
        elif t == EDS:
            self.send(EDS, nonce=r.nonce)
            self._ack_cds()
        elif t == LDS:
            self._track(self.listeners, r, LDS)
            self.send(LDS, nonce=r.nonce)
            wanted = {n for names in self.listeners.values() for n in names} - self.subscribed[RDS]
            if wanted:
                self.subscribed[RDS] |= wanted
                self.send(RDS, subscribe=tuple(sorted(wanted)))
        elif t == RDS:
            self.send(RDS, nonce=r.nonce)
        self.c.acked.add(t)
        return t

    def _track(self, table: dict[str, tuple[str, ...]], r: Any, type_url: str) -> None:
        for res in r.resources:
            table[res.name] = names_wanted(type_url, f"{res.name}@{res.version}", [res.resource])
        for name in r.removed_resources:
            table.pop(name, None)

    def _ack_cds(self) -> None:
        if self.cds_nonce is None:
            return
        self.send(CDS, nonce=self.cds_nonce)
        self.cds_nonce = None
        if not self.lds_started:
            self.lds_started = True
            self.send(LDS)


async def run_client(client: Client, target: str, *, stop: asyncio.Event) -> None:
    """Keep one ADS stream up, as Envoy does: a dropped stream is counted and re-opened after a jittered backoff."""
    backoff = BACKOFF_BASE_S
    while not stop.is_set():
        reason = await _one_stream(client, target)
        if stop.is_set():
            return
        client.drops += 1
        client.drop_reasons.add(reason)
        await asyncio.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, BACKOFF_MAX_S)


async def _one_stream(client: Client, target: str) -> str:
    """Run one stream until it ends; returns why it ended."""
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 256 << 20)]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    driver = (DeltaDriver if client.delta else SotwDriver)(client, queue)

    async def requests() -> Any:
        while True:
            item = await queue.get()
            if item is None:
                return
            yield item

    started = time.time()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        method = DELTA_METHOD if client.delta else SOTW_METHOD
        call = channel.stream_stream(method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None)
        driver.start()
        try:
            async for raw in call(requests()):
                _count(client, raw, driver)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()} (first after {time.time() - started:.0f} s)"
        finally:
            queue.put_nowait(None)
    return "ENDED by the server"


def _count(client: Client, raw: bytes, driver: SotwDriver | DeltaDriver) -> None:
    now = time.time()
    type_url = driver.on_response(raw)
    client.responses += 1
    client.bytes_total += len(raw)
    client.bytes_by_type[type_url] = client.bytes_by_type.get(type_url, 0) + len(raw)
    if client.synced_at is None and len(client.acked) == 4:
        client.synced_at = now
    if client.mark is not None and client.reached_at is None and type_url == EDS:
        client.reached_at = now


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _traffic(clients: list[Client]) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    for c in clients:
        for t, n in c.bytes_by_type.items():
            key = t.rsplit(".", 1)[-1]
            by_type[key] = by_type.get(key, 0) + n
    return {"bytes": sum(c.bytes_total for c in clients), "bytes_by_type": by_type,
            "responses": sum(c.responses for c in clients),
            "dropped": sum(c.drops for c in clients), "drop_reasons": _reasons(clients)}


def _reasons(clients: list[Client]) -> list[str]:
    """One example per status code (the first seen), so the report stays short."""
    by_code: dict[str, str] = {}
    for c in clients:
        for reason in sorted(c.drop_reasons):
            by_code.setdefault(reason.split(" ", 1)[0], reason)
    return sorted(by_code.values())


async def _wait(done: Any, *, deadline: float) -> None:
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def main_async(target: str, n: int, mode: XdsMode, deadline_s: float, *, first: int = 0) -> None:
    stop = asyncio.Event()
    clients = [Client(i, make_node(i, mode=mode), mode is XdsMode.DELTA) for i in range(first, first + n)]
    started = time.time()
    tasks = [asyncio.create_task(run_client(c, target, stop=stop)) for c in clients]
    await _wait(lambda: all(c.synced_at for c in clients), deadline=time.monotonic() + deadline_s)
    synced = [c.synced_at for c in clients if c.synced_at]
    emit("synced", n=n, synced=len(synced), started=started, last=max(synced) if synced else None, **_traffic(clients))
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "mark":
            await _mark(clients, float(line[1]))
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit("closed", **_traffic(clients))


async def _mark(clients: list[Client], seconds: float) -> None:
    now = time.time()
    for c in clients:
        c.mark, c.reached_at, c.bytes_total, c.bytes_by_type, c.responses = now, None, 0, {}, 0
    emit("marked", at=now)
    live = [c for c in clients if c.synced_at]
    await _wait(lambda: all(c.reached_at for c in live), deadline=time.monotonic() + seconds)
    # Responses the same change caused for other types (CDS, LDS, RDS) may trail the EDS one.
    await asyncio.sleep(1.0)
    reached = [c.reached_at for c in live if c.reached_at]
    emit("reached", n=len(live), reached=len(reached), last=max(reached) if reached else None, **_traffic(clients))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--xds", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--mode", choices=["sotw", "delta"], default="sotw")
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--first", type=int, default=0, help="index of the first simulated proxy (several processes)")
    args = parser.parse_args()
    asyncio.run(main_async(args.xds, args.n, XdsMode(args.mode), args.deadline, first=args.first))


if __name__ == "__main__":
    main()

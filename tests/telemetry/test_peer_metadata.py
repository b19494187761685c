"""Istio's x-envoy-peer-metadata header: what malla writes, Istio can read, and the other way round."""

from __future__ import annotations

import base64

from google.protobuf import struct_pb2

from malla.telemetry.peer_metadata import PeerInfo, decode, encode


def test_a_workload_survives_the_header() -> None:
    me = PeerInfo.of(workload="reviews", namespace="shop", labels={"app": "reviews", "version": "v2", "team": "a"},
                     service_account="bookinfo-reviews", instance="reviews-1a2b3c.shop")
    back = decode(encode(me))
    assert back is not None
    assert (back.workload, back.namespace, back.app, back.version) == ("reviews", "shop", "reviews", "v2")
    assert back.service_account == "bookinfo-reviews" and back.instance == "reviews-1a2b3c.shop"
    assert back.labels["team"] == "a"


def test_the_header_is_istios_struct_with_istios_keys() -> None:
    value = encode(PeerInfo.of(workload="ratings", namespace="default", labels={"app": "ratings", "version": "v1"}))
    fields = struct_pb2.Struct.FromString(base64.b64decode(value))
    assert fields["WORKLOAD_NAME"] == "ratings" and fields["NAMESPACE"] == "default"
    labels = fields["LABELS"]
    assert labels["app"] == "ratings" and labels["version"] == "v1"
    # Istio's canonical service labels, which its telemetry prefers.
    assert labels["service.istio.io/canonical-name"] == "ratings"
    assert labels["service.istio.io/canonical-revision"] == "v1"


def test_a_header_written_by_an_istio_proxy_is_read() -> None:
    istio = struct_pb2.Struct()
    istio.update({"NAME": "productpage-v1-7d6cfb7dfd-2x9nq", "NAMESPACE": "default", "WORKLOAD_NAME": "productpage-v1",
                  "CLUSTER_ID": "Kubernetes",
                  "LABELS": {"service.istio.io/canonical-name": "productpage", "service.istio.io/canonical-revision": "v1"}})
    peer = decode(base64.b64encode(istio.SerializeToString()).decode())
    assert peer is not None
    assert (peer.workload, peer.namespace, peer.app, peer.version) == ("productpage-v1", "default", "productpage", "v1")


def test_headers_that_are_not_istios_format_name_no_peer() -> None:
    assert decode("not base64 at all!") is None
    assert decode(base64.b64encode(b"\xff\xfe not a protobuf").decode()) is None
    assert decode("") is None

"""Access-log entries in, Istio's series out: one request or one connection's progress at a time.

HTTP: each ``HTTPAccessLogEntry`` is one finished request: a count, its
duration and its sizes. TCP: Envoy reports a connection when it reaches the
upstream (``TcpUpstreamConnected``), every few seconds while open
(``TcpPeriodic``) and when it ends (``TcpConnectionEnd``), each time with
cumulative byte counts; the recorder keeps the last counts per connection
(``stream_id``) and adds the difference, counts a connection opened the
first time it sees it and closed at its end, as Istio's TCP metrics do.
Connections whose end never came (Envoy restarted) are forgotten beyond
``max_open`` so memory stays bounded.

Each entry carries its access logger's Telemetry metric overrides as a
custom tag (``metric_overrides.TAG_METRICS``); they decide per metric
whether it is recorded and with which labels.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from envoy.data.accesslog.v3 import accesslog_pb2

from malla.telemetry.labels import Directory, http_labels, tcp_labels
from malla.telemetry import metric_overrides
from malla.telemetry.metrics import IstioMetrics, Shape
from malla.telemetry.peer_metadata import PeerInfo

log = logging.getLogger(__name__)

_END = accesslog_pb2.AccessLogType.TcpConnectionEnd


class Recorder:
    def __init__(self, metrics: IstioMetrics, *, me: PeerInfo, directory: Directory, max_open: int = 10_000) -> None:
        self.metrics = metrics
        self.me = me
        self.directory = directory
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[int, int]] = OrderedDict()  # stream id -> (sent, received) so far

    def http(self, entry: accesslog_pb2.HTTPAccessLogEntry) -> None:
        common = entry.common_properties
        if common.intermediate_log_entry:
            return  # a long stream's progress report: the request is counted once, when it ends
        labels = http_labels(entry, me=self.me, directory=self.directory)
        request_bytes = common.downstream_wire_bytes_received or (
            entry.request.request_headers_bytes + entry.request.request_body_bytes
        )
        response_bytes = common.downstream_wire_bytes_sent or (
            entry.response.response_headers_bytes + entry.response.response_body_bytes
        )
        self.metrics.record_request(
            labels,
            duration_ms=common.duration.ToNanoseconds() / 1e6,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
            shape=_shape(entry),
        )

    def tcp(self, entry: accesslog_pb2.TCPAccessLogEntry) -> None:
        common = entry.common_properties
        key = common.stream_id or f"{common.downstream_remote_address}|{common.start_time.ToNanoseconds()}"
        sent, received = entry.connection_properties.sent_bytes, entry.connection_properties.received_bytes
        seen = self._open.pop(key, None)
        before_sent, before_received = seen if seen is not None else (0, 0)
        ended = common.access_log_type == _END or not common.intermediate_log_entry
        labels = tcp_labels(entry, me=self.me, directory=self.directory)
        self.metrics.record_tcp(
            labels,
            sent=max(0, sent - before_sent),
            received=max(0, received - before_received),
            opened=int(seen is None),
            closed=int(ended),
            shape=_shape(entry),
        )
        if not ended:
            self._open[key] = (sent, received)
            while len(self._open) > self.max_open:
                forgotten, _ = self._open.popitem(last=False)
                log.debug("forgot TCP connection %s: no end reported", forgotten)


def _shape(entry: accesslog_pb2.HTTPAccessLogEntry | accesslog_pb2.TCPAccessLogEntry) -> Shape | None:
    shaper = metric_overrides.compiled(entry.common_properties.custom_tags.get(metric_overrides.TAG_METRICS, ""))
    if shaper is metric_overrides.NO_OVERRIDES:
        return None
    return lambda metric, labels: shaper.shape(metric, labels, entry)

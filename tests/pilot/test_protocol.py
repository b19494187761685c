import pytest

from malla.pilot.protocol import Protocol, effective_protocol, parse_protocol, protocol_from_port


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("http", Protocol.HTTP),
        ("http-web", Protocol.HTTP),
        ("HTTP2", Protocol.HTTP2),
        ("grpc", Protocol.GRPC),
        ("grpc-web", Protocol.GRPC_WEB),
        ("grpc-web-x", Protocol.GRPC_WEB),
        ("tcp-db", Protocol.TCP),
        ("tls", Protocol.TLS),
        ("https-admin", Protocol.HTTPS),
        ("mongo", Protocol.MONGO),
        ("redis", Protocol.REDIS),
        ("mysql", Protocol.MYSQL),
        ("web", Protocol.UNSUPPORTED),
        ("udp-dns", Protocol.UNSUPPORTED),
    ],
)
def test_port_name_prefix_decides_as_in_istio(name, expected):
    assert protocol_from_port(port=8000, name=name) is expected


def test_app_protocol_wins_over_the_name():
    assert protocol_from_port(port=80, name="tcp", app_protocol="http") is Protocol.HTTP
    assert protocol_from_port(port=80, name="web", app_protocol="kubernetes.io/h2c") is Protocol.HTTP2
    assert protocol_from_port(port=443, name="", app_protocol="kubernetes.io/wss") is Protocol.HTTPS


def test_udp_transport_and_well_known_ports():
    assert protocol_from_port(port=53, name="dns", transport="UDP") is Protocol.UDP
    assert protocol_from_port(port=3306, name="db") is Protocol.TCP


def test_unnamed_ports_are_tcp_when_sniffing_is_off():
    assert effective_protocol(Protocol.UNSUPPORTED, sniffing=False) is Protocol.TCP
    assert effective_protocol(Protocol.UNSUPPORTED, sniffing=True) is Protocol.UNSUPPORTED
    assert parse_protocol("Grpc-Web") is Protocol.GRPC_WEB


def test_protocol_classes():
    assert Protocol.GRPC.is_http and Protocol.GRPC.is_http2
    assert Protocol.HTTPS.is_tcp and Protocol.HTTPS.is_tls and not Protocol.HTTPS.is_http
    assert not Protocol.HTTP.is_http2

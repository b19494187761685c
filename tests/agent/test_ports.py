"""Ports for a workload's app: parsed from --port, and chosen where no outgoing connection can take them."""

from __future__ import annotations

import socket

import pytest

from malla.agent import ports
from malla.agent.ports import app_port, parse_ports
from malla.pilot.protocol import Protocol


def test_ports_are_parsed_and_named_like_istio() -> None:
    specs = parse_ports(["9080", "9081/http", "6379/tcp"])
    assert [(s.port, s.protocol, s.name) for s in specs] == [
        (9080, Protocol.HTTP, "http"), (9081, Protocol.HTTP, "http-9081"), (6379, Protocol.TCP, "tcp")]


@pytest.mark.parametrize(("text", "message"), [
    ("9080/quic", "unknown protocol 'quic'"), ("http", "NUMBER[/PROTOCOL]"), ("70000", "between 1 and 65535")])
def test_a_bad_port_names_the_flag_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"--port") as raised:
        parse_ports([text])
    assert message in str(raised.value)


def test_app_ports_are_outside_the_kernels_ephemeral_range_and_free() -> None:
    ephemeral = ports._ephemeral_range()
    for _ in range(20):
        port = app_port()
        assert port not in ephemeral
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: the app can bind it


def test_a_taken_port_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            spare = probe.getsockname()[1]
        monkeypatch.setattr(ports, "_APP_PORTS", range(busy, busy + 1))
        monkeypatch.setattr(ports, "_ephemeral_range", lambda: range(0))
        assert app_port() != busy
        monkeypatch.setattr(ports, "_APP_PORTS", [busy, spare])
        assert app_port() == spare

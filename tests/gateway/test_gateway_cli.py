"""``malla gateway`` as a person runs it: its address, what it prints, taken ports, Ctrl-C."""

from __future__ import annotations

import socket

import httpx
import pytest

from malla.agent.ports import free_port

from tests.gateway.conftest import Mesh, Process, eventually

pytestmark = [pytest.mark.envoy, pytest.mark.xdist_group("gateway-cli")]


def gateway_yaml(name: str, port: int, *, selector: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: {selector}}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"""


def hold(address: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((address, port))
    sock.listen()
    return sock


def test_default_address_is_loopback_it_prints_the_url_and_ctrl_c_exits_0(mesh: Mesh):
    port = free_port()
    mesh.apply(gateway_yaml("cli", port, selector="cli-gw"))
    gateway = mesh.malla("gateway", "--name", "cli-gw", "--port", str(port))
    gateway.wait_line(f"http://127.0.0.1:{port}/")
    # Nothing is bound to the server yet: Envoy answers 404 for every host.
    assert httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=5).status_code == 404
    assert gateway.stop() == 0
    assert all(line.startswith("serving ") for line in gateway.stdout), gateway.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=2)


def test_a_declared_port_that_is_taken_is_a_clear_error(mesh: Mesh):
    address, port = mesh.spare[0], free_port()
    with hold(address, port):
        gateway = mesh.malla("gateway", "--name", "taken-gw", "--address", address, "--port", str(port))
        assert gateway.proc.wait(30) == 1
    assert f"port {port} on {address} is taken" in gateway.output()
    assert "--address" in gateway.output()


def test_a_gateway_server_port_taken_by_another_program_is_reported(mesh: Mesh):
    address, port = mesh.spare[1], free_port()
    mesh.apply(gateway_yaml("late", port, selector="late-gw"))
    with hold(address, port):
        gateway = mesh.malla("gateway", "--name", "late-gw", "--address", address)
        eventually(lambda: "is taken" in gateway.output(), what="the taken port reported")
    assert f"cannot listen on {address}_{port}" in gateway.output()
    assert gateway.stop() == 0


def test_two_gateways_never_share_a_port(mesh: Mesh):
    address, port = mesh.spare[2], free_port()
    mesh.apply(gateway_yaml("shared", port, selector="shared-gw"))
    first = mesh.malla("gateway", "--name", "shared-gw", "--address", address)
    first.wait_line(f"http://{address}:{port}/")
    second = mesh.malla("gateway", "--name", "shared-gw", "--address", address)
    eventually(lambda: "is taken" in second.output(), what="the second gateway told the port is taken")
    assert second.stdout == []
    assert second.stop() == 0
    assert first.stop() == 0


def test_a_gateway_no_gateway_selects_says_so(mesh: Mesh):
    gateway = mesh.malla("gateway", "--name", "lonely-gw", "--address", mesh.spare[3])
    eventually(lambda: "no Gateway selects this gateway yet" in gateway.output(), what="the hint")
    assert "app=lonely-gw,istio=lonely-gw" in gateway.output()
    assert gateway.stop() == 0


def test_without_a_control_plane_it_says_how_to_start_one(tmp_path):
    gateway = Process(["gateway", "--home", str(tmp_path)])
    assert gateway.proc.wait(30) == 3
    assert "malla up" in gateway.output()


def test_bad_labels_and_addresses_name_the_option(mesh: Mesh):
    bad_labels = mesh.malla("gateway", "--labels", "istio")
    assert bad_labels.proc.wait(30) == 2
    assert "--labels: 'istio' is not key=value" in bad_labels.output()
    bad_address = mesh.malla("gateway", "--address", "localhost")
    assert bad_address.proc.wait(30) == 1
    assert "--address 'localhost'" in bad_address.output()



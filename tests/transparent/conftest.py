"""Fixtures for transparent capture: test namespaces are named malla-test-* and always deleted."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from malla.agent import netns
from tests.controlplane.harness import mesh, running  # noqa: F401  (fixtures)


def new_netns_name() -> str:
    return f"malla-test-{secrets.token_hex(4)}"


def remove_netns(name: str) -> None:
    """Delete a test namespace and what belongs to it, whatever state a failed test left."""
    owner = netns.RUN_DIR / name / "owner.json"
    host_interface = None
    if owner.exists():
        try:
            host_interface = json.loads(owner.read_text()).get("hostInterface")
        except ValueError:
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if host_interface:
        subprocess.run(["ip", "link", "del", str(host_interface)], capture_output=True)
    shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    shutil.rmtree(netns.RUN_DIR / name, ignore_errors=True)


@pytest.fixture
def workload_netns() -> Iterator[netns.Link]:
    """A namespace set up as ``malla run --transparent`` sets one up, without the agent."""
    link = netns.allocate_link(new_netns_name())
    try:
        netns.create(
            link,
            hosts=netns.hosts_file(ns_address=link.ns_address, hostname="frontend"),
            resolv_conf=netns.resolv_conf(namespace="default"),
            rules=netns.capture_rules(),
        )
        yield link
    finally:
        netns.delete(link)
        remove_netns(link.netns)

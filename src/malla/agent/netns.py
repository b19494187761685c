"""Network namespaces for transparent capture: what Istio's CNI plugin (or init container) does.

A transparent workload gets a namespace of its own, ``eth0`` inside it and
``mallaN`` in the root namespace (a veth pair), addresses from a /30 of
``POOL`` (host side ``.1``, workload ``.2``; a /30 no route of the host
overlaps, held host-wide by an abstract socket lock), a default route via
the host side, its own ``resolv.conf`` and ``hosts`` (``/etc/netns/NAME/``,
which ``ip netns exec`` mounts over ``/etc``), and these rules in the
namespace's ``nat`` and ``filter`` tables. Nothing in the root namespace's
tables is touched; deleting the namespace deletes the rules and the veth.

========================  =============================================================  ==========================================
chain                     rule                                                           why
========================  =============================================================  ==========================================
PREROUTING                ``-p tcp -j ISTIO_INBOUND``                                    every inbound TCP connection ...
ISTIO_INBOUND             ``-p tcp -j ISTIO_IN_REDIRECT``                                ... (no port is exempt)
ISTIO_IN_REDIRECT         ``-p tcp -j REDIRECT --to-ports 15006``                        ... goes to ``virtualInbound``
OUTPUT                    ``-p udp --dport 53 -m owner --uid-owner 1337 -j REDIRECT      the sidecar's own lookups go to the agent's
                          --to-ports 15053`` (and the same for tcp)                      host-only DNS relay (no mesh VIPs for Envoy)
OUTPUT                    ``-p tcp -j ISTIO_OUTPUT``                                     every outbound TCP connection:
ISTIO_OUTPUT              ``-o lo -s 127.0.0.6/32 -j RETURN``                            inbound passthrough (Envoy binds 127.0.0.6)
ISTIO_OUTPUT              ``-o lo -d 127.0.0.1/32 -m owner --uid-owner 1337 -j RETURN``  the sidecar to its app and the relays
ISTIO_OUTPUT              ``-d 127.0.0.0/8 -m owner --uid-owner 1337 -j MALLA_EGRESS``   the sidecar to the host's loopback
                                                                                         workloads (127.0.1.x): the agent's relay
ISTIO_OUTPUT              ``-o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337            the sidecar to its own address: inbound
                          -j ISTIO_IN_REDIRECT``                                         (a workload calling itself)
ISTIO_OUTPUT              ``-o lo -m owner ! --uid-owner 1337 -j RETURN``                the app over loopback: left alone
ISTIO_OUTPUT              ``! -o lo -m owner --uid-owner 1337 -j MALLA_EGRESS``          the sidecar leaving the namespace: relay
ISTIO_OUTPUT              ``-m owner --uid-owner 1337 -j RETURN``                        the rest of the sidecar's traffic
ISTIO_OUTPUT              the three rules above again with ``--gid-owner 1337``          (Istio's, for a proxy run by gid only)
ISTIO_OUTPUT              ``-d 127.0.0.1/32 -j RETURN``                                  the app to 127.0.0.1
ISTIO_OUTPUT              ``-j ISTIO_REDIRECT``                                          everything else the app sends ...
ISTIO_REDIRECT            ``-p tcp -j REDIRECT --to-ports 15001``                        ... goes to ``virtualOutbound``
MALLA_EGRESS              ``-p tcp -j REDIRECT --to-ports 15002``                        the agent's egress relay (see below)
filter OUTPUT             ``-o lo -d 127.0.0.1/32 -p tcp --dport P -m owner ! --uid-owner  the relays (15002, 15010, 15053) serve the
                          1337 -j REJECT`` (and udp 15053)                               sidecar only, never the app
========================  =============================================================  ==========================================

The ISTIO_* chains are Istio's (``tools/istio-iptables``) with its
defaults: capture all inbound ports, exclude loopback. MALLA_EGRESS is
malla's own: on one host without Kubernetes, the root namespace does not
forward or NAT for the workload (we never touch the host's tables), and the
mesh's other workloads listen on the host's loopback addresses, which no
namespace can route to. So every connection the sidecar opens to the world
is redirected to the agent, which listens inside the namespace and dials the
original destination from the root namespace (``relay``), as any process
on the host would. The app never gets there: its traffic is Envoy's first.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PROXY_UID = 1337
PROXY_GID = 1337
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
EGRESS_RELAY_PORT = 15002
XDS_RELAY_PORT = 15010
PROXY_DNS_PORT = 15053
APP_NAMESERVER = "127.0.0.11"  # the namespace's resolv.conf points here (the agent's DNS relay)
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"
POOL = ipaddress.IPv4Network("10.89.0.0/16")
RUN_DIR = Path("/run/malla")
NS_INTERFACE = "eth0"
_CLONE_NEWNET = 0x40000000
# sudo and cron keep a PATH without the sbin directories where ip and iptables live.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


class NetnsError(RuntimeError):
    """A namespace could not be set up or used; the message names the command and its error."""


@dataclass(frozen=True)
class Tool:
    command: str
    package: str


REQUIRED_TOOLS = (Tool("ip", "iproute2"), Tool("iptables-restore", "iptables"), Tool("setpriv", "util-linux"))


def check_requirements() -> None:
    """Raise NetnsError naming what is missing (root, a tool and its Debian package) and how to get it."""
    if not os.uname().sysname == "Linux":
        raise NetnsError("--transparent needs Linux (network namespaces and iptables)")
    if os.geteuid() != 0:
        raise NetnsError("--transparent needs root (it creates a network namespace and iptables rules): run it with sudo")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool.command, path=_SEARCH_PATH) is None]
    if missing:
        names = ", ".join(f"{t.command} (Debian package {t.package})" for t in missing)
        packages = " ".join(sorted({t.package for t in missing}))
        raise NetnsError(f"--transparent needs {names}; install with: apt-get install {packages}")


# -- addresses ------------------------------------------------------------------


@dataclass
class Link:
    """One workload's namespace and its veth pair, and the host-wide lock on its /30."""

    netns: str
    subnet: ipaddress.IPv4Network
    host_interface: str
    lock: socket.socket | None = field(default=None, repr=False)

    @property
    def host_address(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def ns_address(self) -> str:
        return str(self.subnet.network_address + 2)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def allocate_link(netns: str, *, pool: ipaddress.IPv4Network = POOL) -> Link:
    """A /30 of ``pool`` that no route or address of the host overlaps, locked host-wide."""
    used = _host_networks()
    for index, subnet in enumerate(pool.subnets(new_prefix=30)):
        host_interface = f"malla{index}"
        if any(subnet.overlaps(net) for net in used) or Path(f"/sys/class/net/{host_interface}").exists():
            continue
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(f"\0malla/netns-link/{subnet}")
        except OSError as exc:
            lock.close()
            if exc.errno == errno.EADDRINUSE:
                continue  # another agent is setting this one up right now
            raise
        return Link(netns=netns, subnet=subnet, host_interface=host_interface, lock=lock)
    raise NetnsError(f"no free /30 left in {pool} for a workload namespace")


def _host_networks() -> list[ipaddress.IPv4Network]:
    out = []
    for args in (["-4", "-o", "route", "show", "table", "all"], ["-4", "-o", "addr", "show"]):
        for line in _ip(*args).splitlines():
            words = line.split()
            for word in words[:4]:
                try:
                    out.append(ipaddress.IPv4Network(word, strict=False))
                    break
                except ValueError:
                    continue
    return [n for n in out if n.prefixlen > 0]


# -- namespace lifecycle ------------------------------------------------------------


def create(link: Link, *, hosts: str, resolv_conf: str, rules: str) -> None:
    """Namespace, veth pair, addresses, default route, resolver files and rules; undone on failure."""
    ns, host_if = link.netns, link.host_interface
    _ip("netns", "add", ns, what=f"create network namespace {ns}")
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", host_if, "type", "veth", "peer", "name", NS_INTERFACE, "netns", ns)
        _ip("addr", "add", f"{link.host_address}/{link.subnet.prefixlen}", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{link.ns_address}/{link.subnet.prefixlen}", "dev", NS_INTERFACE)
        _ip("-n", ns, "link", "set", NS_INTERFACE, "up")
        _ip("-n", ns, "route", "add", "default", "via", link.host_address)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        (etc / "resolv.conf").write_text(resolv_conf)
        _run([*exec_prefix(ns), _tool("iptables-restore")], input=rules, what="install the capture rules")
    except BaseException:
        delete(link)
        raise


def delete(link: Link) -> list[str]:
    """Remove everything ``create`` made (whatever of it exists); returns what could not be removed."""
    problems = []
    if netns_exists(link.netns):
        try:
            _ip("netns", "del", link.netns)
        except NetnsError as exc:
            problems.append(str(exc))
    # The peer goes with the namespace, asynchronously: give the kernel a moment, then insist.
    host_side = Path(f"/sys/class/net/{link.host_interface}")
    deadline = time.monotonic() + 2.0
    while host_side.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if host_side.exists():
        try:
            _ip("link", "del", link.host_interface)
        except NetnsError as exc:
            if host_side.exists():
                problems.append(str(exc))
    shutil.rmtree(Path("/etc/netns") / link.netns, ignore_errors=True)
    link.release()
    return problems


def netns_exists(name: str) -> bool:
    return (Path("/run/netns") / name).exists() or (Path("/var/run/netns") / name).exists()


def hosts_file(*, ns_address: str, hostname: str) -> str:
    """The namespace's own ``/etc/hosts``, as a pod's: localhost and itself."""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ns_address}\t{hostname}\n"


def resolv_conf(*, namespace: str, domain: str = "cluster.local") -> str:
    """Kubernetes' search list, so ``reviews`` finds ``reviews.NAMESPACE.svc.DOMAIN`` first."""
    search = f"{namespace}.svc.{domain} svc.{domain} {domain}"
    return f"nameserver {APP_NAMESERVER}\nsearch {search}\noptions ndots:5\n"


# -- rules ------------------------------------------------------------------------------


def capture_rules() -> str:
    """The ``iptables-restore`` input for a workload namespace (the table in the module docstring)."""
    uid, gid = PROXY_UID, PROXY_GID
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
        ":ISTIO_INBOUND - [0:0]", ":ISTIO_IN_REDIRECT - [0:0]", ":ISTIO_OUTPUT - [0:0]", ":ISTIO_REDIRECT - [0:0]",
        ":MALLA_EGRESS - [0:0]",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_CAPTURE_PORT}",
        f"-A OUTPUT -p udp --dport 53 -m owner --uid-owner {uid} -j REDIRECT --to-ports {PROXY_DNS_PORT}",
        f"-A OUTPUT -p tcp --dport 53 -m owner --uid-owner {uid} -j REDIRECT --to-ports {PROXY_DNS_PORT}",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        f"-A ISTIO_OUTPUT -o lo -s {INBOUND_PASSTHROUGH_SOURCE}/32 -j RETURN",
        f"-A ISTIO_OUTPUT -o lo -d 127.0.0.1/32 -m owner --uid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT -d 127.0.0.0/8 -m owner --uid-owner {uid} -j MALLA_EGRESS",
        f"-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner {uid} -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT ! -o lo -m owner --uid-owner {uid} -j MALLA_EGRESS",
        f"-A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN",
        f"-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner {gid} -j ISTIO_IN_REDIRECT",
        f"-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {gid} -j RETURN",
        f"-A ISTIO_OUTPUT -m owner --gid-owner {gid} -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_CAPTURE_PORT}",
        f"-A MALLA_EGRESS -p tcp -j REDIRECT --to-ports {EGRESS_RELAY_PORT}",
        "COMMIT",
    ]
    only_proxy = f"-m owner ! --uid-owner {uid} -j REJECT"
    filter_ = [
        "*filter",
        ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        *(
            f"-A OUTPUT -o lo -d 127.0.0.1/32 -p tcp --dport {port} {only_proxy} --reject-with tcp-reset"
            for port in (EGRESS_RELAY_PORT, XDS_RELAY_PORT, PROXY_DNS_PORT)
        ),
        f"-A OUTPUT -o lo -d 127.0.0.1/32 -p udp --dport {PROXY_DNS_PORT} {only_proxy}",
        "COMMIT",
    ]
    return "\n".join(nat + filter_) + "\n"


# -- sockets inside a namespace -----------------------------------------------------


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread that joined ``netns``: sockets it makes live there for good.

    setns(2) moves only the calling thread, so the process and its other
    threads stay in the root namespace.
    """
    result: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(_netns_path(netns), os.O_RDONLY)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise NetnsError(f"cannot enter network namespace {netns}: {os.strerror(code)}")
            finally:
                os.close(fd)
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"malla-netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def listen(netns: str, host: str, port: int, *, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A TCP listening (or UDP bound) socket inside ``netns``."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock

    try:
        return in_netns(netns, make)
    except OSError as exc:
        raise NetnsError(f"cannot listen on {host}:{port} in network namespace {netns}: {exc.strerror}") from exc


def connect(netns: str, host: str, port: int, *, timeout: float) -> socket.socket:
    """A TCP connection made from inside ``netns`` (raises OSError when refused)."""

    def make() -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)

    return in_netns(netns, make)


def _netns_path(name: str) -> str:
    for base in ("/run/netns", "/var/run/netns"):
        if os.path.exists(f"{base}/{name}"):
            return f"{base}/{name}"
    raise NetnsError(f"network namespace {name} does not exist")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- commands ----------------------------------------------------------------------


def exec_prefix(netns: str, *, as_proxy: bool = False) -> list[str]:
    """The command prefix that runs a program inside ``netns`` (as the proxy's uid and gid)."""
    prefix = [_tool("ip"), "netns", "exec", netns]
    if as_proxy:
        # The kernel clears the parent-death signal on a uid change; setpriv sets it again after.
        prefix += [_tool("setpriv"), f"--reuid={PROXY_UID}", f"--regid={PROXY_GID}", "--clear-groups", "--pdeathsig=KILL"]
    return prefix


def _tool(command: str) -> str:
    return shutil.which(command, path=_SEARCH_PATH) or command


def _ip(*args: str, what: str | None = None) -> str:
    return _run([_tool("ip"), *args], what=what)


def _run(command: list[str], *, input: str | None = None, what: str | None = None) -> str:
    try:
        done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"cannot {what or 'run'} ({' '.join(command)}): {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise NetnsError(f"cannot {what or 'run'}: {' '.join(command)} failed: {detail}")
    return done.stdout


# -- ownership, for cleaning up after an agent that was killed ---------------------------


def write_owner(link: Link, *, run_dir: Path) -> None:
    """Record who owns the namespace, so that a later agent can clean up if this one is SIGKILLed."""
    (run_dir / "owner.json").write_text(
        json.dumps({"pid": os.getpid(), "started": _start_time(os.getpid()), "netns": link.netns,
                    "subnet": str(link.subnet), "hostInterface": link.host_interface})
    )


def sweep_stale(*, root: Path = RUN_DIR) -> list[str]:
    """Delete namespaces whose owning agent is gone; returns their names."""
    swept = []
    for owner_file in sorted(root.glob("*/owner.json")):
        try:
            owner = json.loads(owner_file.read_text())
            alive = _start_time(int(owner["pid"])) == owner.get("started")
            link = Link(netns=str(owner["netns"]), subnet=ipaddress.IPv4Network(owner["subnet"]),
                        host_interface=str(owner["hostInterface"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if alive:
            continue
        delete(link)
        shutil.rmtree(owner_file.parent, ignore_errors=True)
        swept.append(link.netns)
    return swept


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None

"""The home directory: where a control plane keeps its state and how commands find it.

``$MALLA_HOME`` or ``.malla/`` in the current directory. The running control
plane writes ``controlplane.json`` (pid and real addresses); every command
reads it, so ``MALLA_HOME=... malla status`` works from anywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "controlplane.json"


def home_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("MALLA_HOME")
    if env:
        return Path(env).resolve()
    return (Path.cwd() / ".malla").resolve()


@dataclass(frozen=True)
class ControlPlaneState:
    pid: int
    xds_address: str  # "127.0.0.1:15010"
    api_url: str  # "http://127.0.0.1:20001"
    monitoring_url: str  # "http://127.0.0.1:15014"
    home: str
    config_dirs: tuple[str, ...] = ()
    started_at: float = 0.0
    dns_address: str = ""  # "127.0.0.1:PORT": mesh DNS (transparent workloads' agents relay to it)
    ca_address: str = ""  # "127.0.0.1:15012": certificate renewals over mTLS
    ca_join_address: str = ""  # "127.0.0.1:15013": first certificates, with a join token
    ca_root_cert: str = ""  # the trust bundle's file (<home>/ca/root-cert.pem)
    trust_domain: str = "cluster.local"
    # The name the CA's serving certificate is checked against (empty: the host of the address);
    # an agent on another host checks istiod's name, whatever address it dials.
    ca_server_name: str = ""

    def write(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(home / STATE_FILE)

    @classmethod
    def read(cls, home: Path) -> ControlPlaneState | None:
        try:
            data = json.loads((home / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        data["config_dirs"] = tuple(data.get("config_dirs") or ())
        try:
            return cls(**data)
        except TypeError:
            return None


def applied_dir(home: Path) -> Path:
    """Where ``malla apply`` keeps what it applied, one file per resource, so restarts keep it."""
    return home / "config" / "applied"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited already; a detached control plane's new parent may be slow to reap it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]

"""A Prometheus configuration file for a running mesh (pure): what ``malla prometheus-config`` prints.

Two jobs: ``malla-controlplane`` scrapes the control plane's ``/metrics``
(15014) and ``malla-proxies`` every sidecar's and gateway's merged
``/stats/prometheus`` (15020 on each workload's address). The proxies come
from the control plane's HTTP service discovery
(``/api/v1/telemetry/targets``), so workloads that join later are scraped
without a new file; ``static`` writes the targets of this moment instead,
for a Prometheus that cannot reach the control plane's API.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from malla.telemetry.targets import TARGETS_PATH

CONTROL_PLANE_JOB = "malla-controlplane"
PROXIES_JOB = "malla-proxies"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")  # Prometheus' duration syntax


class ConfigError(ValueError):
    """An option Prometheus would refuse; the message names it and what is allowed."""


def check_duration(value: str, *, option: str) -> str:
    if not _DURATION.match(value):
        raise ConfigError(f"{option} {value!r}: not a Prometheus duration; use e.g. 500ms, 1s, 15s or 1m")
    return value


def build_config(
    *,
    api_url: str,
    monitoring_url: str,
    scrape_interval: str = "15s",
    refresh_interval: str = "15s",
    static_targets: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The configuration as data; ``static_targets`` (http_sd groups) replace discovery when given."""
    check_duration(scrape_interval, option="--scrape-interval")
    check_duration(refresh_interval, option="--refresh-interval")
    proxies: dict[str, Any] = {"job_name": PROXIES_JOB}
    if static_targets is None:
        proxies["http_sd_configs"] = [{"url": api_url.rstrip("/") + TARGETS_PATH, "refresh_interval": refresh_interval}]
    else:
        proxies["static_configs"] = [
            {"targets": list(g["targets"]),
             "labels": {k: v for k, v in g.get("labels", {}).items() if not k.startswith("__meta_")}}
            for g in static_targets
        ]
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": CONTROL_PLANE_JOB,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [urlsplit(monitoring_url).netloc], "labels": {"component": "pilot"}}],
            },
            proxies,
        ],
    }


def render(config: Mapping[str, Any], *, header: str = "") -> str:
    """YAML text, with ``header`` as comment lines on top."""
    yaml = YAML()  # round-trip dumper: keys stay in the order written (job_name first)
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(dict(config), out)
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comments + out.getvalue()

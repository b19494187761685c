"""``malla apply -f``, ``get``, ``delete -f`` and the watched ``--config`` directory, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.controlplane.harness import Mesh, wait_until

REVIEWS_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""

REVIEWS_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: {namespace}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
"""

# Two mistakes in one file: a bad duration (schema) and weights of a single route (a webhook rule).
BROKEN = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - timeout: 5 parsecs
    route:
    - destination:
        host: ratings
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: many
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def names(mesh: Mesh, *args: str) -> set[tuple[str, str, str]]:
    return {(i["kind"], i["metadata"]["namespace"], i["metadata"]["name"]) for i in mesh.cli_json("get", *args)}


def test_apply_reports_created_configured_unchanged(running: Mesh, tmp_path: Path) -> None:
    vs = write(tmp_path / "vs.yaml", REVIEWS_VS.format(subset="v1"))
    dr = write(tmp_path / "dr.yaml", REVIEWS_DR.format(namespace="prod"))
    first = running.cli("apply", "-f", str(vs), "-f", str(dr))
    assert first.returncode == 0, first.stderr
    assert "VirtualService default/reviews created" in first.stdout
    assert "DestinationRule prod/reviews created" in first.stdout
    again = running.cli("apply", "-f", str(vs))
    assert again.returncode == 0 and "VirtualService default/reviews unchanged" in again.stdout
    write(vs, REVIEWS_VS.format(subset="v2"))
    changed = running.cli("apply", "-f", str(vs))
    assert changed.returncode == 0 and "VirtualService default/reviews configured" in changed.stdout
    assert running.cli_json("get", "vs", "reviews")["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    # -n sets the namespace of documents that name none.
    other = running.cli("apply", "-f", str(vs), "-n", "staging")
    assert "VirtualService staging/reviews created" in other.stdout


def test_get_by_kind_alias_namespace_and_as_json(running: Mesh, tmp_path: Path) -> None:
    running.cli("apply", "-f", str(write(tmp_path / "vs.yaml", REVIEWS_VS.format(subset="v1"))))
    running.cli("apply", "-f", str(write(tmp_path / "dr.yaml", REVIEWS_DR.format(namespace="prod"))))
    table = running.cli("get", "vs")
    assert table.returncode == 0
    assert "VirtualService" in table.stdout and "reviews" in table.stdout and "DestinationRule" not in table.stdout
    assert names(running, "destinationrules", "-n", "prod") == {("DestinationRule", "prod", "reviews")}
    assert names(running, "destinationrules", "-n", "default") == set()
    assert names(running) == {("VirtualService", "default", "reviews"), ("DestinationRule", "prod", "reviews")}
    one = running.cli_json("get", "virtualservice", "reviews")
    assert one["apiVersion"] == "networking.istio.io/v1" and one["spec"]["hosts"] == ["reviews"]
    missing = running.cli("get", "vs", "nope")
    assert missing.returncode != 0 and "nope" in missing.stderr
    unknown = running.cli("get", "frobnicators")
    assert unknown.returncode != 0 and "frobnicators" in unknown.stderr


def test_an_invalid_file_changes_nothing_and_names_file_and_fields(running: Mesh, tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", REVIEWS_VS.format(subset="v1"))
    assert running.cli("apply", "-f", str(good)).returncode == 0
    before = running.cli_json("get")
    # The valid document beside the broken ones is not applied either.
    bad = write(tmp_path / "bad.yaml", REVIEWS_VS.format(subset="v2") + "---\n" + BROKEN)
    done = running.cli("apply", "-f", str(bad))
    assert done.returncode == 1
    assert "created" not in done.stdout and "configured" not in done.stdout
    assert str(bad) in done.stderr
    assert "spec.http[0].timeout" in done.stderr
    assert "spec.trafficPolicy.connectionPool.tcp.maxConnections" in done.stderr
    assert "nothing was applied" in done.stderr
    assert running.cli_json("get") == before
    as_json = running.cli("apply", "-f", str(bad), "-o", "json")
    assert as_json.returncode == 1
    fields = {d.get("field") for r in json.loads(as_json.stdout) for d in r["diagnostics"]}
    assert {"spec.http[0].timeout", "spec.trafficPolicy.connectionPool.tcp.maxConnections"} <= fields


def test_delete_removes_what_the_files_name(running: Mesh, tmp_path: Path) -> None:
    both = write(tmp_path / "both.yaml", REVIEWS_VS.format(subset="v1") + "---\n" + REVIEWS_DR.format(namespace="default"))
    assert running.cli("apply", "-f", str(both)).returncode == 0
    done = running.cli("delete", "-f", str(both))
    assert done.returncode == 0, done.stderr
    assert "VirtualService default/reviews deleted" in done.stdout
    assert "DestinationRule default/reviews deleted" in done.stdout
    assert running.cli_json("get") == []
    again = running.cli("delete", "-f", str(both))
    assert "VirtualService default/reviews not found" in again.stdout


def test_applied_config_survives_a_restart(running: Mesh, tmp_path: Path) -> None:
    vs = write(tmp_path / "vs.yaml", REVIEWS_VS.format(subset="v1"))
    assert running.cli("apply", "-f", str(vs)).returncode == 0
    before = running.cli_json("get")
    assert running.cli("down").returncode == 0
    running.start()
    assert running.cli_json("get") == before
    assert "VirtualService default/reviews unchanged" in running.cli("apply", "-f", str(vs)).stdout


def test_config_directory_is_watched_and_a_broken_edit_keeps_the_last_good_version(mesh: Mesh, tmp_path: Path) -> None:
    config = tmp_path / "mesh-config"
    config.mkdir()
    vs = write(config / "reviews.yaml", REVIEWS_VS.format(subset="v1"))
    mesh.start("--config", str(config))

    def subset() -> str | None:
        # Waits read the API (cheap); what is asserted is read with the CLI.
        items = mesh.api("/api/v1/config?kind=VirtualService&name=reviews")["items"]
        return items[0]["spec"]["http"][0]["route"][0]["destination"]["subset"] if items else None

    assert mesh.cli_json("get", "vs", "reviews")["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"
    write(vs, REVIEWS_VS.format(subset="v2"))
    wait_until(lambda: subset() == "v2", timeout=15, what="the edited file to reach the control plane")
    write(vs, REVIEWS_VS.format(subset="v3").replace("hosts:", "hosts: [", 1))
    wait_until(lambda: mesh.api("/api/v1/status")["configProblems"], timeout=15, what="the broken edit to be reported")
    assert mesh.cli_json("get", "vs", "reviews")["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2", (
        "a broken edit replaced the last good version"
    )
    shown = mesh.cli("get")
    assert str(vs) in shown.stderr and "error" in shown.stderr and "last good version" in shown.stderr
    assert "config problem" in mesh.cli("status").stdout
    write(vs, REVIEWS_VS.format(subset="v3"))
    wait_until(lambda: subset() == "v3", timeout=15, what="the fixed file to reach the control plane")
    assert mesh.api("/api/v1/status")["configProblems"] == 0
    # What the directory holds is edited there, not with apply.
    refused = mesh.cli("apply", "-f", str(write(tmp_path / "copy.yaml", REVIEWS_VS.format(subset="v9"))))
    assert refused.returncode == 1 and str(vs) in refused.stderr
    vs.unlink()
    wait_until(lambda: subset() is None, timeout=15, what="the removed file's resources to go")
    assert mesh.cli_json("get") == []


def test_a_config_directory_that_does_not_exist_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    done = mesh.up("--config", str(tmp_path / "typo"))
    assert done.returncode == 2
    assert str(tmp_path / "typo") in done.stderr and "does not exist" in done.stderr
    assert mesh.state() is None

"""`malla validate` as a user runs it: exit codes, messages, JSON for scripts, stdin."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from malla.cli.main import app
from tests.conformance import SAMPLES

runner = CliRunner()

GOOD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""
BAD = GOOD.replace("subset: v1}", "subset: v1}\n      weight: -1")


def test_valid_files_exit_0_and_say_what_was_checked(tmp_path):
    (tmp_path / "vs.yaml").write_text(GOOD)
    res = runner.invoke(app, ["validate", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "1 Istio resource(s) valid" in res.output


def test_invalid_file_exits_1_and_names_file_line_resource_and_field(tmp_path):
    f = tmp_path / "vs.yaml"
    f.write_text(BAD)
    res = runner.invoke(app, ["validate", str(f)])
    assert res.exit_code == 1
    assert f"{f}:9: error: VirtualService shop/reviews (document 1)" in res.output
    assert "spec.http[0].route[0].weight" in res.output


def test_every_error_is_listed_not_only_the_first(tmp_path):
    (tmp_path / "a.yaml").write_text(BAD)
    (tmp_path / "b.yaml").write_text(BAD.replace("reviews", "ratings"))
    res = runner.invoke(app, ["validate", "-o", "json", str(tmp_path)])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert data["valid"] is False
    assert {d["resource"] for d in data["diagnostics"] if d["level"] == "error"} == {
        "VirtualService shop/reviews",
        "VirtualService shop/ratings",
    }
    assert all({"file", "document", "line", "field", "message"} <= set(d) for d in data["diagnostics"])


def test_missing_path_is_an_error(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1
    assert "no such file or directory" in res.output


def test_stdin_is_read_with_dash():
    proc = subprocess.run(
        [sys.executable, "-m", "malla", "validate", "-o", "json", "-"],
        input=GOOD, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["resources"] == ["VirtualService shop/reviews"]


def test_istio_samples_validate_and_kubernetes_objects_are_counted():
    res = runner.invoke(app, ["validate", str(SAMPLES)])
    assert res.exit_code == 0, res.output
    assert "Kubernetes object(s) kept aside" in res.output


def test_istioctl_spelling_with_f_checks_the_same_files(tmp_path):
    (tmp_path / "vs.yaml").write_text(BAD)
    res = runner.invoke(app, ["validate", "-f", str(tmp_path / "vs.yaml")])
    assert res.exit_code == 1
    assert "weight" in res.output
    res = runner.invoke(app, ["analyze", "--filename", str(tmp_path / "vs.yaml")])
    assert res.exit_code == 79  # istioctl analyze's "issues found"
    assert "IST0106" in res.output


def test_no_files_is_a_usage_error_that_says_what_to_give():
    for command in ("validate", "analyze"):
        res = runner.invoke(app, [command])
        assert res.exit_code == 2
        assert f"malla {command} FILE_OR_DIR" in res.output


def test_list_analyzers_needs_no_files():
    res = runner.invoke(app, ["analyze", "-L", "-o", "json"])
    assert res.exit_code == 0, res.output
    names = {row["name"] for row in json.loads(res.output)}
    assert "auth.AuthorizationPoliciesAnalyzer" in names and len(names) >= 26

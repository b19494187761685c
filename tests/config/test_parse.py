"""Decoding YAML streams into typed resources: what a user sees for good and bad input."""

from __future__ import annotations

import textwrap

import pytest

from malla.config.parse import parse_text


def parse(text: str, path: str = "f.yaml"):
    return parse_text(textwrap.dedent(text), path=path)


VS = """\
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
"""


def test_multi_document_stream_gives_configs_and_keeps_kubernetes_objects_aside():
    r = parse(VS + "---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 9080}]}\n---\n")
    assert r.ok, r.diagnostics
    assert [c.ref for c in r.configs] == ["VirtualService default/reviews"]
    assert [k.ref for k in r.kube] == ["Service reviews"]
    assert r.documents == 2


def test_list_kind_items_are_each_decoded():
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: reviews, namespace: bookinfo}
  spec:
    host: reviews
    subsets: [{name: v1, labels: {version: v1}}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c}
"""
    r = parse(text)
    assert r.ok, r.diagnostics
    assert [c.ref for c in r.configs] == ["DestinationRule bookinfo/reviews"]
    assert [k.kind for k in r.kube] == ["ConfigMap"]


def test_duplicate_keys_are_rejected_with_their_line():
    r = parse(VS.replace("  hosts: [reviews]\n", "  hosts: [reviews]\n  hosts: [ratings]\n"))
    assert not r.ok
    (err,) = r.errors
    assert "duplicate" in err.message.lower()
    assert err.origin.line == 7


def test_yaml_1_2_keeps_no_and_on_as_strings():
    text = VS.replace("  - route:\n", "  - match:\n    - headers:\n        end-user:\n          exact: no\n    route:\n")
    r = parse(text)
    assert r.ok, r.diagnostics
    match = r.configs[0].spec.http[0].match[0]
    assert match.headers["end-user"].exact == "no"


def test_unknown_field_is_an_error_naming_its_path_line_and_the_known_fields():
    r = parse(VS.replace("        host: reviews\n", "        host: reviews\n        subst: v1\n"))
    (err,) = r.errors
    assert err.field == "spec.http[0].route[0].destination.subst"
    assert err.origin.line == 11
    assert err.resource == "VirtualService default/reviews"
    assert "unknown field 'subst'" in err.message and "subset" in err.message
    assert r.configs == [] and r.invalid == 1


def test_semantic_rule_errors_carry_file_document_resource_and_field():
    text = "---\n" + VS.replace("  - route:\n    - destination:\n        host: reviews\n",
                                "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n"
                                "    - destination: {host: reviews, subset: v2}\n      weight: -20\n")
    r = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n" + text, path="dir/vs.yaml")
    assert not r.ok
    err = r.errors[0]
    assert err.origin.path == "dir/vs.yaml"
    assert err.origin.document == 2
    assert err.field.startswith("spec.http[0]")
    assert err.field == "spec.http[0].route[1].weight" and "weight" in err.message
    assert err.format().startswith("dir/vs.yaml:")


def test_wrong_types_are_named():
    r = parse(VS.replace("  hosts: [reviews]", "  hosts: reviews"))
    (err,) = r.errors
    assert err.field == "spec.hosts" and "list" in err.message


@pytest.mark.parametrize(
    "text, needle",
    [
        ("apiVersion: networking.istio.io/v9\nkind: VirtualService\nmetadata: {name: a}\nspec: {}\n", "unsupported apiVersion"),
        ("kind: VirtualService\nmetadata: {name: a}\n", "apiVersion"),
        ("- just\n- a list\n", "expected a mapping"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {}\nspec: {hosts: [a]}\n", "metadata.name is required"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: [1]\n", "spec must be a mapping"),
        ("a: [unclosed\n", "invalid YAML"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspecs: {}\n", "unknown field 'specs'"),
    ],
)
def test_bad_documents_give_clean_errors(text, needle):
    r = parse(text)
    assert not r.ok
    assert any(needle in d.message for d in r.errors), [d.message for d in r.errors]


def test_unknown_istio_kind_is_kept_aside_with_a_warning():
    r = parse("apiVersion: networking.istio.io/v1\nkind: MeshWidget\nmetadata: {name: a}\n")
    assert r.ok
    assert [d.level for d in r.diagnostics] == ["warning"]
    assert r.kube[0].kind == "MeshWidget"


def test_json_files_are_read_too():
    r = parse('{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g", "namespace": "x"},'
              ' "spec": {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}',
              path="g.json")
    assert r.ok, r.diagnostics
    assert r.configs[0].ref == "Gateway x/g"


def test_documents_before_a_syntax_error_are_kept_and_the_error_names_its_document():
    r = parse(VS + "---\nkey: [broken\n")
    assert len(r.configs) == 1
    (err,) = r.errors
    assert err.origin.document == 2 and err.origin.line is not None

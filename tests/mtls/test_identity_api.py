"""The control plane's certificate board and identity API: what agents may report, what users are told."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from malla.cli.certificates import certificate_warning, time_left
from malla.controlplane.citadel import STALE_AFTER, IdentityBoard
from tests.mtls.harness import Mesh

REPORT: dict[str, Any] = {
    "nodeId": "sidecar~127.0.1.7~reviews-1.default~default.svc.cluster.local", "name": "reviews",
    "namespace": "default", "spiffeId": "spiffe://cluster.local/ns/default/sa/reviews", "state": "VALID",
    "serial": "1f", "notBefore": 1000.0, "notAfter": 1100.0, "rotations": 1, "failures": 0,
    "envoySynced": True, "roots": [{"serial": "aa", "subject": "CN=root", "notAfter": 9999.0}],
}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("change", "words"), [
    ({"nodeId": None}, "nodeId: required"),
    ({"state": "FINE"}, "state: 'FINE' is not one of PENDING, VALID"),
    ({"notAfter": "tomorrow"}, "notAfter: must be a number"),
    ({"roots": "aa"}, "roots: must be a list of objects"),
    ({"spiffeId": 7}, "spiffeId: must be a string"),
])
def test_a_report_that_is_not_one_is_refused_naming_the_field(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        IdentityBoard().report(REPORT | change)


def test_the_board_computes_time_left_when_asked_and_says_when_a_report_is_old() -> None:
    clock = Clock(1000.0)
    board = IdentityBoard(clock=clock)
    board.report(REPORT)

    clock.now = 1040.0
    [item] = board.items()
    assert (item["secondsLeft"], item["state"], item["stale"]) == (60.0, "VALID", False)

    clock.now = 1000.0 + STALE_AFTER + 50  # past notAfter, and the agent went quiet
    [item] = board.items()
    assert (item["state"], item["stale"]) == ("EXPIRED", True)
    assert "CERTIFICATE EXPIRED" in str(certificate_warning(item)) and "ago" in time_left(item["secondsLeft"])
    assert board.forget(REPORT["nodeId"]) and board.items() == []


def test_warnings_get_louder_as_expiry_nears() -> None:
    fine = REPORT | {"secondsLeft": 50.0, "stale": False}
    assert certificate_warning(fine) is None
    failing = fine | {"state": "ROTATION FAILING", "failures": 2, "lastError": "the CA at x answered UNAVAILABLE"}
    assert "rotation of reviews-1.default" in str(certificate_warning(failing))
    assert "valid for 50s" in str(certificate_warning(failing))
    expiring = failing | {"state": "EXPIRING", "secondsLeft": 9.0}
    loud = str(certificate_warning(expiring))
    assert "CERTIFICATE EXPIRING" in loud and "expires in 9s" in loud


def test_the_api_refuses_bad_requests_with_the_reason(mesh: Mesh) -> None:
    api = mesh.state.api_url
    bad_report = httpx.put(api + "/api/v1/identities", json=REPORT | {"state": "?"}, trust_env=False)
    assert bad_report.status_code == 400 and "state:" in bad_report.json()["error"]
    assert httpx.put(api + "/api/v1/identities", content=b"[]", trust_env=False).status_code == 400
    assert httpx.put(api + "/api/v1/identities", json=REPORT, trust_env=False).status_code == 200
    assert [i["serial"] for i in mesh.identities()] == ["1f"]
    assert httpx.delete(api + "/api/v1/identities", params={"node": "nobody"}, trust_env=False).status_code == 404

    wrong_step = httpx.post(api + "/api/v1/ca/rotate-root", json={"step": "now"}, trust_env=False)
    assert wrong_step.status_code == 400 and "begin, activate, retire" in wrong_step.json()["error"]
    too_early = httpx.post(api + "/api/v1/ca/rotate-root", json={"step": "activate"}, trust_env=False)
    assert too_early.status_code == 409 and "no new root is staged" in too_early.json()["error"]
    ttl = httpx.post(api + "/api/v1/tokens", json={"namespace": "default", "ttlSeconds": -1}, trust_env=False)
    assert ttl.status_code == 400 and "ttlSeconds" in ttl.json()["error"]

"""HTTP routing end to end: Istio YAML in, real sidecars, traffic decides."""

from __future__ import annotations

import pytest

from tests.e2e.mesh import App, Mesh, Traffic, shares, wait_for

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

WEIGHTED = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
"""


def test_weighted_split(mesh: Mesh) -> None:
    *_, client = mesh.start(App("reviews", "v1"), App("reviews", "v2"), clients=1)
    # New subset clusters are warm before routes send traffic to them: no request fails.
    with Traffic(client, URL) as during:
        mesh.apply(SUBSETS + "---" + WEIGHTED)
    assert during.statuses and not during.failures, during.failures[:3]
    http = client.http()
    seen = shares(http.get(URL).version for _ in range(1000))
    assert set(seen) == {"v1", "v2"}, seen
    assert abs(seen["v1"] - 80) <= 5 and abs(seen["v2"] - 20) <= 5, seen

    # Deleting both moves routes off the subset clusters before they go: no request fails.
    with Traffic(client, URL) as during:
        mesh.delete(SUBSETS + "---" + WEIGHTED)
    assert during.statuses and not during.failures, during.failures[:3]
    subset = f"outbound|9080|v1|reviews.{mesh.namespace}.svc.cluster.local"
    wait_for(client.envoy_clusters, lambda names: subset not in names, timeout=5, what=f"{subset} to be removed")
    assert {http.get(URL).version for _ in range(50)} == {"v1", "v2"}


JASON_V2_ELSE_V3 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v3}
"""


# An e-mail pattern: its RE2 program (748 instructions) is beyond Envoy's default
# limit of 100, which Istio raises in its bootstrap (re2.max_program_size.error_level).
EMAIL = r"^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,63}\\.[a-z]{2,24}$"


def test_header_match_routes_to_its_subset(mesh: Mesh) -> None:
    *_, client = mesh.start(App("reviews", "v1"), App("reviews", "v2"), App("reviews", "v3"), clients=1)
    mesh.apply(SUBSETS + "---" + JASON_V2_ELSE_V3)
    http = client.http()
    assert {http.get(URL, headers={"end-user": "jason"}).version for _ in range(20)} == {"v2"}
    assert {http.get(URL, headers={"end-user": "mike"}).version for _ in range(20)} == {"v3"}
    assert {http.get(URL).version for _ in range(20)} == {"v3"}
    mesh.apply(JASON_V2_ELSE_V3.replace("{exact: jason}", f'{{regex: "{EMAIL}"}}'))
    assert {http.get(URL, headers={"end-user": "jason@example.com"}).version for _ in range(20)} == {"v2"}
    assert {http.get(URL, headers={"end-user": "jason"}).version for _ in range(20)} == {"v3"}


FAULTS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-fault: {exact: abort}
    fault:
      abort:
        httpStatus: 418
        percentage: {value: 100}
    route:
    - destination: {host: reviews}
  - match:
    - headers:
        x-fault: {exact: delay}
    fault:
      delay:
        fixedDelay: 700ms
        percentage: {value: 100}
    route:
    - destination: {host: reviews}
  - route:
    - destination: {host: reviews}
"""


def test_fault_abort_and_delay(mesh: Mesh) -> None:
    reviews, client = mesh.start(App("reviews", "v1"), clients=1)
    mesh.apply(FAULTS)
    http = client.http()
    aborted = [http.get(URL, headers={"x-fault": "abort"}) for _ in range(50)]
    assert {r.status for r in aborted} == {418}
    assert reviews.app_stats()["requests"] == 0, "an aborted request must not reach the app"
    plain = min(http.get(URL).seconds for _ in range(3))
    delayed = http.get(URL, headers={"x-fault": "delay"})
    assert delayed.status == 200
    assert delayed.seconds - plain >= 0.6, (delayed.seconds, plain)


RETRIES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    retries:
      attempts: 2
      retryOn: 5xx
"""

NO_RETRIES = RETRIES.replace("attempts: 2\n      retryOn: 5xx", "attempts: 0")


def test_retries_turn_a_first_attempt_failure_into_200(mesh: Mesh) -> None:
    # The app fails the 1st, 3rd, 5th... request with 500: every first attempt fails.
    reviews, client = mesh.start(App("reviews", "v1", args=("--fail-every", "2", "--fail-status", "500")), clients=1)
    http = client.http()
    mesh.apply(NO_RETRIES)
    assert {http.get(URL).status for _ in range(10)} == {500, 200}
    mesh.apply(RETRIES)
    before = reviews.app_stats()
    replies = [http.get(URL) for _ in range(20)]
    after = reviews.app_stats()
    assert [r.status for r in replies] == [200] * 20
    assert after["failures"] - before["failures"] >= 10, "the app must have failed first attempts"
    assert after["requests"] - before["requests"] >= 30


TIMEOUT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    timeout: 300ms
    retries: {attempts: 0}
"""


def test_route_timeout_gives_504(mesh: Mesh) -> None:
    _, client = mesh.start(App("reviews", "v1"), clients=1)
    mesh.apply(TIMEOUT)
    http = client.http()
    assert http.get(URL, headers={"x-sleep-ms": "50"}).status == 200
    slow = http.get(URL, headers={"x-sleep-ms": "3000"})
    assert slow.status == 504
    assert slow.body == b"upstream request timeout"


MIRROR = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100}
"""


def test_mirror_receives_copies(mesh: Mesh) -> None:
    _, v2, client = mesh.start(App("reviews", "v1"), App("reviews", "v2"), clients=1)
    mesh.apply(SUBSETS + "---" + MIRROR)
    http = client.http()
    assert {http.get(URL).version for _ in range(30)} == {"v1"}, "the mirror's answers are never returned"
    stats = v2.wait_app_requests(30)
    assert stats["hosts"] == {"reviews-shadow:9080": 30}, "mirrored copies carry Envoy's -shadow host"

"""SPIFFE IDs of mesh workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

In: text (a certificate's URI SAN, a user's flag). Out: an `Identity`, or a
ValueError that says which part is wrong and what is allowed. The rules are
the SPIFFE ID spec's (lowercase trust domain of letters, digits, `.`, `-`,
`_`; path segments of letters, digits, `.`, `-`, `_`, never `.` or `..`)
narrowed to Istio's one path shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"
DEFAULT_TRUST_DOMAIN = "cluster.local"

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,253}")


@dataclass(frozen=True, order=True)
class Identity:
    """A workload identity: who a certificate speaks for."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        check_segment("namespace", self.namespace)
        check_segment("service_account", self.service_account)

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri


def check_trust_domain(trust_domain: str) -> str:
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise ValueError(f"trust domain {trust_domain!r}: use 1-255 lowercase letters, "
                         "digits, '.', '-' or '_' (for example 'cluster.local')")
    return trust_domain


def check_segment(field: str, value: str) -> None:
    if not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{field} {value!r}: use 1-253 letters, digits, '.', '-' or '_' "
                         "(and not '.' or '..')")


def parse_spiffe_id(uri: str) -> Identity:
    """Parse `spiffe://<td>/ns/<ns>/sa/<sa>`; anything else is a ValueError."""
    if not uri.startswith(SCHEME):
        raise ValueError(f"SPIFFE ID {uri!r}: must start with {SCHEME!r}")
    trust_domain, _, path = uri[len(SCHEME):].partition("/")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise ValueError(f"SPIFFE ID {uri!r}: the path must be /ns/<namespace>/sa/<service-account>")
    return Identity(trust_domain, parts[1], parts[3])

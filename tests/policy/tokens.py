"""Test issuers of JSON Web Tokens: an RSA key made in the test, its JWKS, RS256 tokens signed by hand.

Signing is a few lines over ``cryptography`` (base64url header and payload,
PKCS#1 v1.5 SHA-256 signature), so the tests need no JWT library.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Issuer:
    """One signing key of an issuer (``kid``), with the public half as a JWKS."""

    iss: str
    kid: str = "key-1"
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": _uint(numbers.n), "e": _uint(numbers.e)}
        return json.dumps({"keys": [jwk]})

    def token(self, *, now: int, lifetime: int = 3600, **claims: Any) -> str:
        """A token issued ``now`` (seconds since the epoch), valid for ``lifetime`` seconds (negative: expired)."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {"iss": self.iss, "sub": "user-1", "iat": now, "exp": now + lifetime, **claims}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


def decode_payload(token_or_header: str) -> dict[str, Any]:
    """The JSON payload of a token, or of the base64url payload Envoy forwards in a header."""
    part = token_or_header.split(".")[1] if "." in token_or_header else token_or_header
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

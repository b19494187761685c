"""Whether a Kubernetes Secret holds a usable gateway credential, as Istio's SDS reads it.

A credential is ``tls.crt``/``tls.key`` (kubernetes.io/tls) or ``cert``/``key``
(Istio's generic form), both non-empty; the certificate must be PEM X.509,
and, when the caller gives the time, valid at that time. The clock is never
read here.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from datetime import datetime

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from malla.analysis.kube import mapping
from malla.config.model import KubeObject

_KEY_PAIRS = (("cert", "key"), ("tls.crt", "tls.key"))


def secret_data(secret: KubeObject) -> dict[str, bytes]:
    """The Secret's values as bytes: ``data`` is base64, ``stringData`` is plain text."""
    out: dict[str, bytes] = {}
    data = mapping(secret.body.get("data"))
    for key, value in data.items():
        try:
            out[str(key)] = base64.b64decode(str(value or ""), validate=True)
        except (binascii.Error, ValueError):
            out[str(key)] = b""
    string_data = mapping(secret.body.get("stringData"))
    out.update({str(k): str(v or "").encode() for k, v in string_data.items()})
    return out


def certificate_problem(secret: KubeObject, *, now: datetime | None) -> str | None:
    """Why the Secret is not a usable server credential, or None when it is."""
    data = secret_data(secret)
    cert = next((data[c] for c, k in _KEY_PAIRS if data.get(c) and data.get(k)), None)
    if cert is None:
        return f"no non-empty key pair among {', '.join('/'.join(p) for p in _KEY_PAIRS)}"
    try:
        with warnings.catch_warnings():
            # Envoy accepts certificates with a zero serial; so does this check.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            chain = x509.load_pem_x509_certificates(cert)
    except ValueError:
        return "the certificate is not PEM-encoded X.509"
    if now is not None:
        for c in chain:
            if now < c.not_valid_before_utc:
                return f"the certificate is not valid before {c.not_valid_before_utc.isoformat()}"
            if now > c.not_valid_after_utc:
                return f"the certificate expired at {c.not_valid_after_utc.isoformat()}"
    return None

"""Join tokens: genuine ones pass; forged, expired and wrong-identity ones are refused."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from malla.ca.tokens import JoinTokens, TokenError, load_or_create_secret


class Seconds:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def now() -> Seconds:
    return Seconds()


@pytest.fixture
def tokens(tmp_path: Path, now: Seconds) -> JoinTokens:
    return JoinTokens(load_or_create_secret(tmp_path), clock=now)


def test_a_genuine_token_names_its_identity(tokens: JoinTokens):
    claims = tokens.verify(tokens.create_token("default", "reviews", ttl=600))
    assert (claims.namespace, claims.service_account) == ("default", "reviews")
    assert claims.expires_at - claims.issued_at == 600
    assert claims.identity_for(None, trust_domain="cluster.local").uri == (
        "spiffe://cluster.local/ns/default/sa/reviews")


def test_the_secret_is_private_and_kept(tmp_path: Path, now: Seconds):
    first = load_or_create_secret(tmp_path)
    assert stat.S_IMODE((tmp_path / "join-token.key").stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == first
    token = JoinTokens(first, clock=now).create_token("default", ttl=60)
    JoinTokens(load_or_create_secret(tmp_path), clock=now).verify(token)


def test_expired_token_is_refused(tokens: JoinTokens, now: Seconds):
    token = tokens.create_token("default", "reviews", ttl=60)
    now.now += 59
    tokens.verify(token)
    now.now += 1
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token)


def test_token_from_another_control_plane_is_refused(tmp_path: Path, tokens: JoinTokens,
                                                     now: Seconds):
    other = JoinTokens(b"x" * 32, clock=now).create_token("default", "reviews", ttl=60)
    with pytest.raises(TokenError, match="forged"):
        tokens.verify(other)


def _rewrite(token: str, **changes: object) -> str:
    prefix, payload, mac = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{prefix}.{encoded}.{mac}"


@pytest.mark.parametrize("change", [{"sa": "admin"}, {"ns": "istio-system"},
                                    {"exp": 4_000_000_000}])
def test_edited_payload_is_refused(tokens: JoinTokens, change: dict[str, object]):
    token = tokens.create_token("default", "reviews", ttl=60)
    with pytest.raises(TokenError, match="forged"):
        tokens.verify(_rewrite(token, **change))


@pytest.mark.parametrize("garbage", ["", "abc", "malla1.", "malla1.x.y", "malla1.!!!.@@@"])
def test_garbage_is_refused(tokens: JoinTokens, garbage: str):
    with pytest.raises(TokenError):
        tokens.verify(garbage)


def test_wrong_identity_is_refused(tokens: JoinTokens):
    token = tokens.create_token("default", "reviews", ttl=60)
    with pytest.raises(TokenError, match="namespace 'default', not 'prod'"):
        tokens.verify(token, namespace="prod")
    with pytest.raises(TokenError, match="service account 'reviews' in 'default', not 'ratings'"):
        tokens.verify(token, service_account="ratings")


def test_any_service_account_token_needs_a_named_account(tokens: JoinTokens):
    token = tokens.create_token("default", ttl=60)
    claims = tokens.verify(token, service_account="ratings")
    assert claims.identity_for("ratings", trust_domain="cluster.local").service_account == "ratings"
    with pytest.raises(TokenError, match="name the service account"):
        claims.identity_for(None, trust_domain="cluster.local")


@pytest.mark.parametrize(("args", "message"), [
    (("default", "reviews"), "positive lifetime"),
    (("bad/ns", "reviews"), "namespace 'bad/ns'"),
    (("default", "re views"), "service_account 're views'"),
])
def test_create_token_checks_its_inputs(tokens: JoinTokens, args: tuple[str, str], message: str):
    ttl = 0 if "lifetime" in message else 60
    with pytest.raises(ValueError, match=message):
        tokens.create_token(*args, ttl=ttl)

"""Fixtures for the agent's identity tests: fake time, a CA on that time, a fetch that signs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest

from malla.agent.identity import WorkloadCertificate
from malla.ca.authority import CertificateAuthority
from malla.ca.spiffe import parse_spiffe_id

REVIEWS = "spiffe://cluster.local/ns/default/sa/reviews"


class Stop(Exception):
    """Raised by the fake sleep to end a rotation loop."""


class FakeTime:
    """Epoch seconds that move only when the code under test sleeps."""

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.stop_after: int | None = None

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, timezone.utc)

    async def sleep(self, seconds: float) -> None:
        if self.stop_after is not None and len(self.sleeps) >= self.stop_after:
            raise Stop
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class SigningFetch:
    """A `Fetch` that signs with a CA directly; it can be told to fail."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self.calls = 0
        self.failing: Exception | None = None
        self.ttls: list[float | None] = []

    async def __call__(self, csr: bytes, ttl: float | None,
                       current: WorkloadCertificate | None) -> Sequence[str]:
        self.calls += 1
        self.ttls.append(ttl)
        if self.failing is not None:
            raise self.failing
        return self.ca.sign_csr(csr, identity=parse_spiffe_id(REVIEWS), ttl=ttl).cert_chain()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake_ca(tmp_path: Path, fake_time: FakeTime) -> CertificateAuthority:
    return CertificateAuthority.open(tmp_path / "ca", clock=fake_time.utc)


@pytest.fixture
def signing_fetch(fake_ca: CertificateAuthority) -> SigningFetch:
    return SigningFetch(fake_ca)

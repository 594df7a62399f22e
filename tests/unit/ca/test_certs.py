"""Node certificates, join tokens, renewal and heartbeat deadlines: pure parts of issue 4."""

from __future__ import annotations

import asyncio
import datetime
import random
from pathlib import Path

import pytest

from shoal.ca.certs import (
    identity_of,
    make_csr,
    new_key,
    sign_node_csr,
    verify_node_cert,
)
from shoal.ca.files import NodeTLS, load_node_tls, save_node_tls
from shoal.ca.renewal import CertRenewer, renew_at
from shoal.ca.root import RootCA, ca_digest, join_token, parse_join_token, token_matches
from shoal.errors import InvalidArgument
from shoal.manager.dispatcher.liveness import Liveness

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def ca() -> RootCA:
    return RootCA.generate("test")


def issue(ca: RootCA, role: str = "worker", expiry: datetime.timedelta = HOUR,
          now: datetime.datetime = NOW) -> tuple[bytes, bytes]:
    key = new_key()
    cert = sign_node_csr(ca, make_csr(key), "node1", role, "cluster1", expiry, now)  # type: ignore[arg-type]
    return key, cert


def test_the_certificate_states_node_id_role_and_cluster(ca: RootCA) -> None:
    _, cert = issue(ca, "manager")
    who = verify_node_cert(ca.cert_pem, cert, NOW)
    assert (who.node_id, who.role, who.cluster_id) == ("node1", "manager", "cluster1")
    assert identity_of(cert) == who
    assert b"-----BEGIN CERTIFICATE-----" in cert
    assert issue(ca)[1] != cert and identity_of(issue(ca)[1]).role == "worker"


def test_another_ca_or_another_time_is_refused(ca: RootCA) -> None:
    _, cert = issue(ca)
    with pytest.raises(InvalidArgument, match="not signed by this swarm"):
        verify_node_cert(RootCA.generate("other").cert_pem, cert, NOW)
    with pytest.raises(InvalidArgument, match="expired"):
        verify_node_cert(ca.cert_pem, cert, NOW + 2 * HOUR)


def test_a_bad_csr_is_refused(ca: RootCA) -> None:
    with pytest.raises(InvalidArgument, match="signing request"):
        sign_node_csr(ca, b"garbage", "n", "worker", "c", HOUR, NOW)


def test_tokens_pin_the_ca_and_compare_exactly(ca: RootCA) -> None:
    token = join_token(ca)
    digest, secret = parse_join_token(token)
    assert digest == ca.digest() == ca_digest(ca.cert_pem) and len(secret) == 25
    assert token != join_token(ca)  # a fresh secret every time (rotation)
    assert token_matches(token, token) and not token_matches(token, join_token(ca))
    assert not token_matches("", "")
    for bad in ("SWMTKN-1-abc", "SWMTKN-2-" + digest + "-" + secret, "x"):
        with pytest.raises(ValueError):
            parse_join_token(bad)


def test_tls_files_round_trip_with_a_private_key(ca: RootCA, tmp_path: Path) -> None:
    key, cert = issue(ca)
    root = tmp_path / "certificates"
    save_node_tls(root, NodeTLS(ca.cert_pem, cert, key))
    assert load_node_tls(root) == NodeTLS(ca.cert_pem, cert, key)
    assert (root / "swarm-node.key").stat().st_mode & 0o077 == 0


def test_renewal_point_is_within_the_lifetime(ca: RootCA) -> None:
    _, cert = issue(ca, expiry=datetime.timedelta(hours=10))
    start = NOW - datetime.timedelta(minutes=5)  # the slack for clock skew
    assert renew_at(cert, 0.5) == start + (datetime.timedelta(hours=10, minutes=5)) / 2


async def test_a_short_lived_certificate_is_renewed_before_it_expires(ca: RootCA) -> None:
    # valid for 3 more seconds (the 5 minutes of clock-skew slack before now are long past
    # the renewal point of 50-80 % of the lifetime)
    key, cert = issue(ca, expiry=datetime.timedelta(seconds=3),
                      now=datetime.datetime.now(datetime.UTC))
    held = [NodeTLS(ca.cert_pem, cert, key)]

    async def renew(csr: bytes) -> bytes:
        return sign_node_csr(ca, csr, "node1", "worker", "cluster1", HOUR,
                             datetime.datetime.now(datetime.UTC))

    renewer = CertRenewer(lambda: held[-1], renew, held.append, random.Random(1))
    task = asyncio.create_task(renewer.run())
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while len(held) < 2:
            assert asyncio.get_running_loop().time() < deadline, "not renewed"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    old, new = held[0], held[1]
    assert new.key_pem != old.key_pem and new.identity == old.identity
    verify_node_cert(ca.cert_pem, new.cert_pem, datetime.datetime.now(datetime.UTC) + HOUR / 2)
    # renewed while the old certificate was still valid
    verify_node_cert(ca.cert_pem, old.cert_pem, datetime.datetime.now(datetime.UTC))


async def test_a_renewal_that_returns_a_foreign_certificate_is_refused(ca: RootCA) -> None:
    key, cert = issue(ca, now=datetime.datetime.now(datetime.UTC))
    held = [NodeTLS(ca.cert_pem, cert, key)]

    async def renew(csr: bytes) -> bytes:
        return issue(ca, now=datetime.datetime.now(datetime.UTC))[1]  # for another key

    renewer = CertRenewer(lambda: held[-1], renew, held.append, random.Random(1))
    with pytest.raises(InvalidArgument, match="not for the key"):
        await renewer.renew_once()
    assert len(held) == 1


def test_liveness_gives_a_grace_then_declares_down() -> None:
    live = Liveness(period=5.0)
    live.track("a", now=0.0)
    live.track("b", now=0.0)
    live.beat("a", now=10.0)
    assert live.expired(now=14.9) == []
    assert live.expired(now=15.0) == ["b"]  # three periods without a heartbeat
    assert live.expired(now=24.9) == [] and live.expired(now=25.0) == ["a"]
    assert live.next_deadline() is None
    live.beat("a", now=30.0)
    live.set_period(1.0, now=31.0)  # a shorter period pulls the deadline in
    assert live.next_deadline() == 34.0

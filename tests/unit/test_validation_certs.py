"""The webhook's self-signed TLS: issued right, trusted by a strict client, renewed before expiry."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sundial.webhook import certs, keeper

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOSTS = ["sundial-webhook.sundial.svc", "127.0.0.1"]


def handshake(files: keeper.CertificateFiles, server_name: str) -> x509.Certificate:
    """A TLS handshake as the API server makes it: verify the chain against the CA bundle and the name."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.server_pem_path, files.server_pem_path)
    client_ctx = ssl.create_default_context(cafile=str(files.ca_bundle_path))
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as err:
            errors.append(err)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(b"x")
    finally:
        thread.join(5)
        left.close()
        right.close()
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_fresh_certificate_is_trusted_for_every_host(tmp_path: Path) -> None:
    files = keeper.CertificateFiles(tmp_path)
    source = keeper.LocalSource(files, hostnames=HOSTS)
    assert source.sync(datetime.now(UTC)) is certs.Renewed.CA
    for host in HOSTS:
        handshake(files, host)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, "other.example.com")
    assert (files.ca_key_path.stat().st_mode & 0o777) == 0o600
    assert (files.server_pem_path.stat().st_mode & 0o777) == 0o600


def test_renewal_schedule(tmp_path: Path) -> None:
    files = keeper.CertificateFiles(tmp_path)
    source = keeper.LocalSource(files, hostnames=HOSTS)
    assert source.sync(NOW) is certs.Renewed.CA
    first = files.read()
    assert first is not None
    assert source.sync(NOW + timedelta(days=59)) is certs.Renewed.NOTHING
    assert files.read() == first
    due = certs.next_renewal(first)
    assert due is not None and NOW + timedelta(days=59) < due <= NOW + timedelta(days=60)

    # Day 61: a new serving certificate from the same CA; the bundle the API server has stays valid.
    assert source.sync(NOW + timedelta(days=61)) is certs.Renewed.SERVING
    second = files.read()
    assert second is not None
    assert second.ca_bundle == first.ca_bundle and second.cert != first.cert

    # Year 7 of the CA's 10: a new CA, and the old one stays in the bundle until it expires.
    later = NOW + timedelta(days=365 * 7)
    assert source.sync(later) is certs.Renewed.CA
    third = files.read()
    assert third is not None
    bundle = certs.split_pem(third.ca_bundle)
    assert len(bundle) == 2
    assert bundle[1].public_bytes(serialization.Encoding.PEM) == certs.split_pem(first.ca_bundle)[
        0
    ].public_bytes(serialization.Encoding.PEM)
    # After the old CA expired, the bundle drops it: a CA change the API server must learn about.
    assert source.sync(NOW + timedelta(days=3651)) is certs.Renewed.CA
    fourth = files.read()
    assert fourth is not None
    assert len(certs.split_pem(fourth.ca_bundle)) == 1


def test_the_serving_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = certs.new_ca(now=NOW, validity=timedelta(days=10))
    serving = certs.issue_serving(ca, hostnames=["a"], now=NOW, validity=timedelta(days=90))
    assert serving.not_after == ca.not_after


@pytest.mark.parametrize("damage", ["ca.key", "tls.pem", "ca.crt"])
def test_damaged_files_are_replaced(tmp_path: Path, damage: str) -> None:
    files = keeper.CertificateFiles(tmp_path)
    source = keeper.LocalSource(files, hostnames=HOSTS)
    source.sync(datetime.now(UTC))
    (tmp_path / damage).write_bytes(b"garbage")
    assert source.sync(datetime.now(UTC)) is not certs.Renewed.NOTHING
    handshake(files, "127.0.0.1")


def test_a_new_hostname_gets_a_new_certificate(tmp_path: Path) -> None:
    files = keeper.CertificateFiles(tmp_path)
    keeper.LocalSource(files, hostnames=["127.0.0.1"]).sync(datetime.now(UTC))
    assert (
        keeper.LocalSource(files, hostnames=["127.0.0.1", "x.svc"]).sync(datetime.now(UTC))
        is certs.Renewed.SERVING
    )
    handshake(files, "x.svc")


async def test_keep_renewed_renews_and_publishes(tmp_path: Path) -> None:
    files = keeper.CertificateFiles(tmp_path)
    source = keeper.LocalSource(files, hostnames=HOSTS)
    clock = {"now": NOW}
    source.sync(NOW)
    published = asyncio.Event()

    async def publish() -> None:
        published.set()

    task = asyncio.create_task(
        keeper.keep_renewed(source, on_ca_change=publish, clock=lambda: clock["now"], max_sleep=0.01)
    )
    try:
        await asyncio.sleep(0.05)
        assert not published.is_set()
        clock["now"] = NOW + timedelta(days=365 * 7)  # the CA is due
        await asyncio.wait_for(published.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

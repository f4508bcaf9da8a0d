"""Client certificates (mutual TLS): ``ServerConfig(ca_certs=..., verify_mode=...)`` on
the server, ``ClientConfig(certfile=, keyfile=)`` on the client, and the certificate a
handler sees as ``session.peer_certificate``. Certificates are made with
``cryptography`` as a device fleet's CA would make them."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path
from typing import NamedTuple

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fastwt import (
    ClientConfig,
    ConfigurationError,
    ServerConfig,
    WebTransportError,
    WebTransportSession,
)
from fastwt.framework import ServerApp
from fastwt.messages import MessageStream
from fastwt.testing import TestClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class Issued(NamedTuple):
    certfile: Path
    keyfile: Path
    der: bytes


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    certfile, keyfile = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(certfile, keyfile, cert.public_bytes(serialization.Encoding.DER))


class CA:
    """A certificate authority that issues device (client) certificates."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(directory, name, self.cert, self.key).certfile

    def issue(self, device: str) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.directory, device, cert, key)


def device_app(ca: CA, verify_mode: ssl.VerifyMode) -> tuple[ServerApp, list[bytes | None]]:
    """An app that tells each device which certificate it presented."""
    app = ServerApp(config=ServerConfig(ca_certs=ca.pem, verify_mode=verify_mode))
    seen: list[bytes | None] = []

    @app.route(path="/whoami")
    async def whoami(session: WebTransportSession) -> None:
        cert = session.peer_certificate
        seen.append(cert)
        name = None
        if cert is not None:
            subject = x509.load_der_x509_certificate(cert).subject
            name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        stream = MessageStream(await session.create_unidirectional_stream())
        await stream.send({"device": name}, end_stream=True)
        await session.wait_closed()

    return app, seen


async def whoami(client: TestClient) -> object:
    session = await client.connect("/whoami")
    with anyio.fail_after(10):
        answer = await MessageStream(await session.accept_unidirectional_stream()).recv()
    await session.close()
    return answer


def as_device(issued: Issued | None) -> ClientConfig:
    if issued is None:
        return ClientConfig(connect_timeout=5)
    return ClientConfig(certfile=issued.certfile, keyfile=issued.keyfile, connect_timeout=5)


async def test_required_a_device_of_the_ca_connects_and_the_handler_sees_its_certificate(
    tmp_path: Path,
) -> None:
    fleet = CA(tmp_path, "fleet-ca")
    sensor = fleet.issue("sensor-7")
    app, seen = device_app(fleet, ssl.CERT_REQUIRED)
    async with TestClient(app, client_config=as_device(sensor)) as client:
        assert await whoami(client) == {"device": "sensor-7"}
        assert seen == [sensor.der]
        # The client sees the server's certificate the same way.
        session = await client.connect("/whoami")
        assert session.peer_certificate is not None
        assert hashlib.sha256(session.peer_certificate).hexdigest() == app.server.certificate_hash
        assert session.peer_certificate_chain == [session.peer_certificate]


async def test_required_refuses_a_device_without_a_certificate_or_from_another_ca(
    tmp_path: Path,
) -> None:
    fleet, rogue = CA(tmp_path, "fleet-ca"), CA(tmp_path, "rogue-ca")
    for issued in (None, rogue.issue("intruder")):
        app, seen = device_app(fleet, ssl.CERT_REQUIRED)
        async with TestClient(app, client_config=as_device(issued)) as client:
            with pytest.raises(WebTransportError):
                session = await client.connect("/whoami")
                # TLS 1.3: the client may think it connected before the server's
                # refusal of its certificate arrives; then the session dies at once.
                with anyio.fail_after(10):
                    await session.accept_unidirectional_stream()
        assert seen == []


async def test_optional_accepts_a_device_without_a_certificate_and_refuses_a_bad_one(
    tmp_path: Path,
) -> None:
    fleet, rogue = CA(tmp_path, "fleet-ca"), CA(tmp_path, "rogue-ca")
    app, seen = device_app(fleet, ssl.CERT_OPTIONAL)
    async with TestClient(app) as client:
        assert await whoami(client) == {"device": None}
    assert seen == [None]
    sensor = fleet.issue("sensor-8")
    app, seen = device_app(fleet, ssl.CERT_OPTIONAL)
    async with TestClient(app, client_config=as_device(sensor)) as client:
        assert await whoami(client) == {"device": "sensor-8"}
    assert seen == [sensor.der]
    app, seen = device_app(fleet, ssl.CERT_OPTIONAL)
    async with TestClient(app, client_config=as_device(rogue.issue("intruder"))) as client:
        with pytest.raises(WebTransportError):
            session = await client.connect("/whoami")
            with anyio.fail_after(10):
                await session.accept_unidirectional_stream()
    assert seen == []


async def test_without_client_auth_no_certificate_is_asked_for(tmp_path: Path) -> None:
    sensor = CA(tmp_path, "fleet-ca").issue("sensor-9")
    app = ServerApp()
    seen: list[bytes | None] = []

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        seen.append(session.peer_certificate)

    async with TestClient(app, client_config=as_device(sensor)) as client:
        session = await client.connect("/")
        with anyio.fail_after(10):
            await session.wait_closed()
    assert seen == [None]


def test_client_auth_configuration_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs ca_certs"):
        ServerConfig(verify_mode=ssl.CERT_REQUIRED)
    with pytest.raises(ConfigurationError, match="set verify_mode"):
        ServerConfig(ca_certs=tmp_path / "ca.pem")


async def test_an_unreadable_ca_file_fails_at_listen(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    app = ServerApp(config=ServerConfig(ca_certs=bad, verify_mode=ssl.CERT_REQUIRED))
    with pytest.raises(WebTransportError, match=r"ca\.pem"):
        async with TestClient(app):
            pass

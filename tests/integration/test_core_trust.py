"""Client trust in server certificates made the usual ways: ``openssl req -x509`` and the
``cryptography`` snippet of most tutorials both mark a self-signed certificate
``CA:TRUE``; ``ca_certs`` must accept it as Python's ``ssl``, aioquic and pywebtransport do,
and a refusal must say what was wrong and what to do."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fastwt import ClientConfig, WebTransportClient
from fastwt.errors import WebTransportError

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


def tutorial_certificate(
    directory: Path,
    *,
    ca: bool = True,
    days: int = 10,
    names: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> tuple[Path, Path]:
    """A self-signed certificate as the ``cryptography`` tutorial makes it (CA:TRUE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(
            now - datetime.timedelta(days=1) if days > 0 else now - datetime.timedelta(days=3)
        )
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@asynccontextmanager
async def serving(certfile: Path, keyfile: Path) -> AsyncIterator[int]:
    """The echo server with this certificate, on 127.0.0.1: its port."""
    async with echo_server(certfile=certfile, keyfile=keyfile) as echo:
        yield echo.server.local_addresses[0][1]


async def connect(port: int, ca_certs: Path, host: str = "127.0.0.1") -> str:
    async with WebTransportClient(config=ClientConfig(ca_certs=ca_certs)) as client:
        with anyio.fail_after(10):
            session = await client.connect(url=f"https://{host}:{port}/x")
        path = session.path
        await session.close()
        return path


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_self_signed_ca_true_certificate_is_trusted_by_ca_certs(
    tmp_path: Path, host: str
) -> None:
    certfile, keyfile = tutorial_certificate(tmp_path)
    async with serving(certfile, keyfile) as port:
        assert await connect(port, certfile, host) == "/x"


def openssl_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate as ``openssl req -x509`` makes it (CA:TRUE, like most tutorials')."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command on this machine")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "10", "-subj", "/CN=localhost", "-keyout", str(keyfile),
         "-out", str(certfile), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    text = subprocess.run(
        [openssl, "x509", "-in", str(certfile), "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "CA:TRUE" in text  # the way a newcomer's certificate is made
    return certfile, keyfile


async def test_openssl_req_x509_certificate_is_trusted_by_ca_certs(tmp_path: Path) -> None:
    certfile, keyfile = openssl_certificate(tmp_path)
    async with serving(certfile, keyfile) as port:
        assert await connect(port, certfile) == "/x"


async def test_another_certificate_is_refused_with_its_hash_and_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "other").mkdir()
    certfile, keyfile = tutorial_certificate(tmp_path / "server")
    other, _ = tutorial_certificate(tmp_path / "other")
    digest = x509.load_pem_x509_certificate(certfile.read_bytes()).fingerprint(hashes.SHA256())
    async with serving(certfile, keyfile) as port:
        with pytest.raises(WebTransportError) as refused:
            await connect(port, other)
    message = str(refused.value)
    assert "refused" in message
    assert "ca_certs" in message
    assert digest.hex() in message
    assert "server_certificate_hashes" in message


async def test_ca_true_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    certfile, keyfile = tutorial_certificate(tmp_path, names=("example.com",))
    async with serving(certfile, keyfile) as port:
        with pytest.raises(WebTransportError, match="not valid for"):
            await connect(port, certfile)


async def test_expired_ca_true_certificate_is_refused_as_expired(tmp_path: Path) -> None:
    certfile, keyfile = tutorial_certificate(tmp_path, days=-1)
    async with serving(certfile, keyfile) as port:
        with pytest.raises(WebTransportError, match=r"(?i)expired"):
            await connect(port, certfile)


async def test_wrong_certificate_hash_is_refused_with_the_servers_hash(tmp_path: Path) -> None:
    certfile, keyfile = tutorial_certificate(tmp_path, ca=False)
    digest = x509.load_pem_x509_certificate(certfile.read_bytes()).fingerprint(hashes.SHA256())
    config = ClientConfig(server_certificate_hashes=["00" * 32])
    async with serving(certfile, keyfile) as port, WebTransportClient(config=config) as client:
        with pytest.raises(WebTransportError) as refused:
            await client.connect(url=f"https://127.0.0.1:{port}/x")
    assert digest.hex() in str(refused.value)
    assert "server_certificate_hashes" in str(refused.value)

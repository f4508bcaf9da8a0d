"""Development certificates and server identities for the pure-Python backend, made
with ``cryptography`` (which aioquic depends on) the way the Rust core makes them with
rcgen: ECDSA P-256, valid from an hour ago for 13 days (browsers accept a certificate
through ``serverCertificateHashes`` only when it is valid for at most 14 days)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..errors import ConfigurationError

__all__ = ["certificate_hash", "generate_dev_certificate", "load_identity"]

DEV_CERT_VALIDITY_DAYS = 13
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def _dev_identity(names: Sequence[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys([*DEFAULT_NAMES, *names]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastwt development certificate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=DEV_CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def certificate_hash(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the DER certificate (what ``serverCertificateHashes`` takes)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def generate_dev_certificate(names: list[str] | None = None) -> tuple[str, str, str]:
    """(certificate PEM, key PEM, hex SHA-256), like ``fastwt._core``'s."""
    cert, key = _dev_identity(names or [])
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem, certificate_hash(cert)


def load_identity(
    certfile: str | Path | None, keyfile: str | Path | None
) -> tuple[Any, list[Any], Any]:
    """(leaf certificate, chain, private key) from PEM files, or a fresh development
    identity when neither is given."""
    if certfile is None or keyfile is None:
        dev_cert, dev_key = _dev_identity([])
        return dev_cert, [], dev_key
    try:
        certs = x509.load_pem_x509_certificates(Path(certfile).read_bytes())
    except OSError as e:
        raise ConfigurationError(f"configuration error: cannot read {certfile}: {e}") from None
    except ValueError as e:
        raise ConfigurationError(f"configuration error: bad PEM in {certfile}: {e}") from None
    if not certs:
        raise ConfigurationError(f"configuration error: no certificate in {certfile}")
    try:
        key: Any = serialization.load_pem_private_key(Path(keyfile).read_bytes(), password=None)
    except OSError as e:
        raise ConfigurationError(f"configuration error: cannot read {keyfile}: {e}") from None
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            f"configuration error: no usable private key in {keyfile}: {e}"
        ) from None
    return certs[0], certs[1:], key

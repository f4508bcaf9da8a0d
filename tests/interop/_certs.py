"""Development certificates for the interop peers."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from fastwt.cli import write_dev_certificate


class DevCert(NamedTuple):
    certfile: str
    keyfile: str
    sha256: str
    """Hex SHA-256 of the DER certificate, for ``serverCertificateHashes``."""


def make_dev_cert(out_dir: Path) -> DevCert:
    """An ECDSA P-256 certificate for 127.0.0.1, ::1 and localhost, valid 13 days."""
    digest = write_dev_certificate(out_dir)
    return DevCert(str(out_dir / "cert.pem"), str(out_dir / "key.pem"), digest)

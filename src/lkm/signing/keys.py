"""Private keys and X.509 certificates from files, as scripts/sign-file reads them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lkm.signing.algorithms import SigningError


def read_certificates(data: bytes) -> list[bytes]:
    """DER certificates from DER bytes or from PEM text holding one or more."""
    from cryptography import x509

    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise SigningError(f"bad PEM certificate: {e}") from None
        from cryptography.hazmat.primitives.serialization import Encoding

        return [c.public_bytes(Encoding.DER) for c in certs]
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        raise SigningError("not an X.509 certificate (DER or PEM)") from None
    return [data]


def load_certificate(path: str | os.PathLike[str]) -> bytes:
    """The certificate as sign-file reads it: DER first, else the first PEM block."""
    data = Path(path).read_bytes()
    return read_certificates(data)[0]


def load_private_key(path: str | os.PathLike[str]) -> Any:
    """A PEM (or DER) private key without passphrase; ``pkcs11:`` URIs are not supported."""
    from cryptography.hazmat.primitives import serialization

    p = os.fspath(path)
    if p.startswith("pkcs11:"):
        raise SigningError("PKCS#11 keys are not supported")
    data = Path(p).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise SigningError(f"{p}: cannot read private key: {e}") from None


def check_key_matches(private_key: Any, cert_der: bytes) -> None:
    """SigningError unless ``private_key`` is the certificate's key (sign-file's
    X509_check_private_key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = x509.load_der_x509_certificate(cert_der).public_key()
    fmt = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if pub.public_bytes(*fmt) != private_key.public_key().public_bytes(*fmt):
        raise SigningError("private key does not match the certificate")

"""The trusted keys a kernel checks module signatures against (its builtin keyring)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkm import pkcs7
from lkm.signing.algorithms import SigningError
from lkm.signing.keys import read_certificates

_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".x509")


@dataclass(frozen=True)
class Key:
    """A public key from an X.509 certificate, with the ids the kernel looks it up by."""

    der: bytes
    public_key: Any
    subject: str  # the subject's commonName (else the whole subject, RFC 4514)
    serial_issuer: bytes  # serial contents ‖ issuer Name contents (asymmetric_key_generate_id)
    skid: bytes | None  # subjectKeyIdentifier


class Keyring:
    """Trusted certificates: the kernel's builtin (and secondary) keyring.

    ``digests`` limits the hash algorithms the kernel can compute (None: every one
    lkm knows); a signature using another gives ENOPKG, as in a kernel whose
    CONFIG_CRYPTO_SHA512 is a module not yet loaded (see
    :func:`~lkm.signing.algorithms.builtin_digests`).
    """

    def __init__(self, certs: Iterable[bytes] = (), digests: Iterable[str] | None = None
                 ) -> None:
        self.digests = frozenset(digests) if digests is not None else None
        self.keys: list[Key] = []
        self._by_id: dict[tuple[str, bytes], Key] = {}
        for der in certs:
            self.add(der)

    def add(self, der: bytes) -> Key | None:
        """Add a DER certificate; those without an RSA or EC key are ignored (None)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        try:
            cert = x509.load_der_x509_certificate(der)
            pub = cert.public_key()
            ids = pkcs7.certificate_ids(der)
        except Exception as e:  # malformed DER from a hostile image or file
            raise SigningError(f"bad certificate: {e}") from None
        if not isinstance(pub, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            return None
        cns = [a.value for a in cert.subject if a.oid.dotted_string == "2.5.4.3"]
        subject = str(cns[0]) if cns else cert.subject.rfc4514_string()
        key = Key(der, pub, subject, ids.issuer_serial_id, ids.skid)
        self.keys.append(key)
        self._by_id.setdefault(("id", key.serial_issuer), key)
        if key.skid is not None:
            self._by_id.setdefault(("skid", key.skid), key)
        return key

    def find(self, kind: str, ident: bytes) -> Key | None:
        """The key named by ``("id", serial ‖ issuer)`` or ``("skid", SKID)``, if trusted."""
        return self._by_id.get((kind, ident))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ders(self) -> list[bytes]:
        """The certificates, in the order added."""
        return [k.der for k in self.keys]

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> Keyring:
        """Certificates from files (PEM with any number of certificates, or DER) and
        directories (their *.pem, *.crt, *.cer, *.der, *.x509 files)."""
        ring = cls()
        for p in paths:
            p = Path(p)
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in _CERT_SUFFIXES
                           ) if p.is_dir() else [p]
            for f in files:
                try:
                    ders = read_certificates(f.read_bytes())
                except SigningError as e:
                    raise SigningError(f"{f}: {e}") from None
                for der in ders:
                    ring.add(der)
        return ring

    @classmethod
    def from_kernel(cls, path: str | os.PathLike[str]) -> Keyring:
        """The certificates built into a kernel image (or the image of a tree)."""
        from lkm.kimage import KernelImage, locate_vmlinuz

        return cls(KernelImage.load(locate_vmlinuz(path)).certificates)

"""Signing modules as scripts/sign-file does, and taking signatures off again.

The detached PKCS#7 (CMS) SignedData is the one sign-file's OpenSSL
``CMS_sign(... CMS_NOCERTS|CMS_BINARY|CMS_DETACHED ...)`` with ``CMS_NOATTR``
produces (see :func:`lkm.pkcs7.signed_data`): byte for byte for RSA keys (ECDSA
signatures are randomised).  The module then ends ``content ‖ pkcs7 ‖ struct
module_signature ‖ MAGIC`` (scripts/sign-file.c, include/linux/module_signature.h).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from lkm import pkcs7
from lkm.fsutil import write_atomic
from lkm.signature import MAGIC, PKEY_ID_PKCS7
from lkm.signing.algorithms import OID_RSA, SigningError, crypto_hash, hash_algo
from lkm.signing.keys import check_key_matches


def build_pkcs7(content: bytes | memoryview, private_key: Any, cert_der: bytes,
                hash_name: str = "sha256", use_skid: bool = False) -> bytes:
    """The detached PKCS#7 signature of ``content``, encoded as sign-file does; the
    signer is named by issuer and serial number, or with ``use_skid`` (sign-file -k) by
    the certificate's subjectKeyIdentifier."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    h = hash_algo(hash_name)
    if isinstance(private_key, rsa.RSAPrivateKey):
        pkey_algo = pkcs7.algorithm_identifier(OID_RSA, pkcs7.der(pkcs7.NULL))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        if h.ecdsa_oid is None:
            raise SigningError(f"ECDSA cannot sign with {h.name}")
        pkey_algo = pkcs7.algorithm_identifier(h.ecdsa_oid)
    else:
        raise SigningError("only RSA and ECDSA keys can sign modules")
    check_key_matches(private_key, cert_der)
    ids = pkcs7.certificate_ids(cert_der)
    if use_skid and ids.skid is None:
        raise SigningError("certificate has no subjectKeyIdentifier (needed by -k)")
    data = bytes(content)
    if isinstance(private_key, rsa.RSAPrivateKey):
        sig = private_key.sign(data, padding.PKCS1v15(), crypto_hash(h))
    else:
        sig = private_key.sign(data, ec.ECDSA(crypto_hash(h)))
    return pkcs7.signed_data(h.oid, pkey_algo, sig, ids, use_skid)


def signature_trailer(pkcs7_der: bytes) -> bytes:
    """struct module_signature {id_type PKCS#7, sig_len} and the magic."""
    return struct.pack(">BBBBB3xI", 0, 0, PKEY_ID_PKCS7, 0, 0, len(pkcs7_der)) + MAGIC


def append_signature(content: bytes | memoryview, pkcs7_der: bytes) -> bytes:
    """``content ‖ pkcs7 ‖ module_signature ‖ magic``."""
    return b"".join((content, pkcs7_der, signature_trailer(pkcs7_der)))


def sign_module(content: bytes | memoryview, private_key: Any, cert_der: bytes,
                hash_name: str = "sha256", use_skid: bool = False) -> bytes:
    """``content`` with a signature appended (the whole content is signed, as sign-file does,
    an existing signature included)."""
    return append_signature(content, build_pkcs7(content, private_key, cert_der, hash_name,
                                                 use_skid))


def strip_signature(content: bytes | memoryview) -> bytes | None:
    """The module without its last signature, or None if it carries none.

    Only the trailer's sizes are read, so a damaged signature can be stripped too.
    """
    from lkm.signature import body_length

    body = body_length(content)
    return None if body == len(content) else bytes(content[:body])


def read_module_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str | None]:
    """(decompressed content, compression name or None) of a module file."""
    from lkm.compress import decompress, detect

    raw = Path(path).read_bytes()
    kind = detect(raw)
    if kind is None:
        return raw, None
    return decompress(raw, kind), kind


def write_module_bytes(path: str | os.PathLike[str], content: bytes, kind: str | None,
                       mode: int | None = None) -> None:
    """Write ``content`` compressed as ``kind`` (as Kbuild's modules_install would),
    atomically (:func:`lkm.fsutil.write_atomic`)."""
    from lkm.compress import compress

    write_atomic(path, content if kind is None else compress(content, kind), mode)

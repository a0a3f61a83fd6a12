"""Hash and public-key algorithms of module signatures: names, OIDs, what a kernel has.

The hash names are the kernel's ``hash_algo_name`` (crypto/hash_info.c), which
scripts/sign-file and the module's ``sig_hashalgo`` use too.  The public-key
algorithms are those pkcs7_sig_note_pkey_algo (crypto/asymmetric_keys/
pkcs7_parser.c) accepts and lkm can check: rsaEncryption (PKCS#1 v1.5) and
ecdsa-with-<hash>.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lkm import pkcs7
from lkm.errors import LkmError


class SigningError(LkmError):
    """A key, certificate or option cannot be used to sign."""


@dataclass(frozen=True)
class HashAlgo:
    """A digest lkm can compute for a module signature."""

    name: str  # the kernel's hash_algo_name
    oid: bytes  # DER contents of the digest algorithm OID
    hashlib_name: str
    ecdsa_oid: bytes | None  # ecdsa-with-<hash>, None when there is none


HASHES: dict[str, HashAlgo] = {h.name: h for h in (
    HashAlgo("md5", pkcs7.oid("1.2.840.113549.2.5"), "md5", None),
    HashAlgo("sha1", pkcs7.oid("1.3.14.3.2.26"), "sha1", pkcs7.oid("1.2.840.10045.4.1")),
    HashAlgo("sha224", pkcs7.oid("2.16.840.1.101.3.4.2.4"), "sha224",
             pkcs7.oid("1.2.840.10045.4.3.1")),
    HashAlgo("sha256", pkcs7.oid("2.16.840.1.101.3.4.2.1"), "sha256",
             pkcs7.oid("1.2.840.10045.4.3.2")),
    HashAlgo("sha384", pkcs7.oid("2.16.840.1.101.3.4.2.2"), "sha384",
             pkcs7.oid("1.2.840.10045.4.3.3")),
    HashAlgo("sha512", pkcs7.oid("2.16.840.1.101.3.4.2.3"), "sha512",
             pkcs7.oid("1.2.840.10045.4.3.4")),
    HashAlgo("sha3-256", pkcs7.oid("2.16.840.1.101.3.4.2.8"), "sha3_256",
             pkcs7.oid("2.16.840.1.101.3.4.3.10")),
    HashAlgo("sha3-384", pkcs7.oid("2.16.840.1.101.3.4.2.9"), "sha3_384",
             pkcs7.oid("2.16.840.1.101.3.4.3.11")),
    HashAlgo("sha3-512", pkcs7.oid("2.16.840.1.101.3.4.2.10"), "sha3_512",
             pkcs7.oid("2.16.840.1.101.3.4.3.12")),
)}
HASH_BY_OID: dict[bytes, HashAlgo] = {h.oid: h for h in HASHES.values()}

KERNEL_DIGEST_OIDS = frozenset(pkcs7.DIGEST_OIDS)
"""Digests the kernel's PKCS#7 parser knows (others: ENOPKG while parsing); lkm computes
those of HASHES, the rest (md4, rmd160, sm3, streebog) are "unsupported crypto"."""

OID_RSA = pkcs7.OID_RSA_ENCRYPTION
ECDSA_OIDS = frozenset(h.ecdsa_oid for h in HASHES.values() if h.ecdsa_oid)
PKEY_OIDS = frozenset({OID_RSA, *ECDSA_OIDS})
"""digestEncryptionAlgorithm OIDs the kernel's parser accepts (others: ENOPKG)."""


def hash_algo(name: str) -> HashAlgo:
    """The hash named as OpenSSL's EVP_get_digestbyname accepts it (sha256, SHA256, sha3-256)."""
    key = name.lower().replace("_", "-")
    key = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384",
           "sha-512": "sha512"}.get(key, key)
    try:
        return HASHES[key]
    except KeyError:
        raise SigningError(f"unknown hash algorithm {name!r}") from None


def crypto_hash(h: HashAlgo) -> Any:
    """The ``cryptography`` hash object for ``h``."""
    from cryptography.hazmat.primitives import hashes

    table: dict[str, type[hashes.HashAlgorithm]] = {
        "md5": hashes.MD5, "sha1": hashes.SHA1, "sha224": hashes.SHA224,
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
        "sha3-256": hashes.SHA3_256, "sha3-384": hashes.SHA3_384, "sha3-512": hashes.SHA3_512,
    }
    return table[h.name]()


_CONFIG_DIGESTS = {
    "CONFIG_CRYPTO_MD5": ("md5",), "CONFIG_CRYPTO_SHA1": ("sha1",),
    "CONFIG_CRYPTO_SHA256": ("sha224", "sha256"), "CONFIG_CRYPTO_SHA512": ("sha384", "sha512"),
    "CONFIG_CRYPTO_SHA3": ("sha3-256", "sha3-384", "sha3-512"),
}


def builtin_digests(config: str) -> frozenset[str]:
    """The hash algorithms built into a kernel (=y) according to its .config text: those a
    module signature can use before any crypto module is loaded."""
    out: set[str] = set()
    for line in config.splitlines():
        name, eq, value = line.partition("=")
        if eq and value == "y" and name in _CONFIG_DIGESTS:
            out.update(_CONFIG_DIGESTS[name])
    return frozenset(out)

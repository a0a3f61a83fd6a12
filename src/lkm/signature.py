"""The module signature trailer: ``module ‖ signature ‖ struct module_signature ‖ MAGIC``.

This is the read side shared by modinfo, verify and strip-sig, as kmod 30's
libkmod-signature.c reads it.  ``content`` is always the *decompressed* module.
The PKCS#7 message is read by :mod:`lkm.pkcs7`; the kernel's own acceptance rules
live in :mod:`lkm.signing.verify`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lkm import pkcs7
from lkm.errors import SignatureError

MAGIC = b"~Module signature appended~\n"
MODULE_SIGNATURE_SIZE = 12  # struct module_signature
TRAILER_SIZE = MODULE_SIGNATURE_SIZE + len(MAGIC)

# enum pkey_id_type
PKEY_ID_PGP = 0
PKEY_ID_X509 = 1
PKEY_ID_PKCS7 = 2

PKEY_ALGO = ("DSA", "RSA")
PKEY_HASH_ALGO = ("md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3")
PKEY_ID_TYPE = ("PGP", "X509", "PKCS#7")

_MODSIG = struct.Struct(">BBBBB3xI")


@dataclass(frozen=True)
class ModuleSignature:
    """A parsed signature trailer.

    For PKCS#7 (id_type 2) ``signer``, ``key_id``, ``hash_algo`` and ``signature``
    come from the first SignerInfo, as kmod reads them with OpenSSL: issuer
    commonName, serial number magnitude (or the subjectKeyIdentifier when the
    signer is named by SKID), digest algorithm name ("unknown" for one kmod 30's
    table lacks), encrypted digest.  For the old PGP/X509 id types they are kmod's
    raw slices of the trailer.

    A message OpenSSL's ``d2i_PKCS7`` refuses but the kernel's parser reads (a CMS
    signer named by SKID, say) is still described, with ``kmod_reads`` False: kmod's
    modinfo shows no signature fields for it.
    """

    algo: int
    hash: int
    id_type: int
    signer_len: int
    key_id_len: int
    sig_len: int
    raw: bytes  # the signature data: the PKCS#7 DER for id_type 2
    signer: str
    key_id: bytes
    hash_algo: str
    signature: bytes
    by_skid: bool = False  # PKCS#7 signer named by subjectKeyIdentifier (sign-file -k)
    kmod_reads: bool = True  # kmod 30 (OpenSSL) can read the PKCS#7 message

    @property
    def id_type_name(self) -> str:
        return PKEY_ID_TYPE[self.id_type] if self.id_type < len(PKEY_ID_TYPE) else str(self.id_type)

    @property
    def trailer_len(self) -> int:
        """Bytes after the module body: signer, key id, signature, struct, magic."""
        return self.signer_len + self.key_id_len + self.sig_len + TRAILER_SIZE


def format_hex(b: bytes) -> str:
    """kmod's hex form: ``01:AB:...``, wrapped with ``":\\n\\t\\t"`` after every 20 bytes."""
    return ":\n\t\t".join(b[i:i + 20].hex(":").upper() for i in range(0, len(b), 20))


def has_signature(content: bytes | memoryview) -> bool:
    """True when the content ends with the signature magic."""
    n = len(content)
    return n >= len(MAGIC) and bytes(content[n - len(MAGIC):]) == MAGIC


def _trailer(content: bytes | memoryview) -> tuple[int, int, int, int, int, int, int] | None:
    """(body length, algo, hash, id_type, signer_len, key_id_len, sig_len), None if unsigned."""
    n = len(content)
    if not has_signature(content):
        return None
    end = n - len(MAGIC)
    if end < MODULE_SIGNATURE_SIZE:
        raise SignatureError("signature trailer truncated")
    start = end - MODULE_SIGNATURE_SIZE
    algo, hash_, id_type, signer_len, key_id_len, sig_len = _MODSIG.unpack_from(content, start)
    if algo >= len(PKEY_ALGO) or hash_ >= len(PKEY_HASH_ALGO) or id_type >= len(PKEY_ID_TYPE):
        raise SignatureError(
            f"module_signature has unknown algo/hash/id_type {algo}/{hash_}/{id_type}")
    if sig_len == 0:
        raise SignatureError("module_signature has sig_len 0")
    if sig_len + signer_len + key_id_len > start:
        raise SignatureError(f"module_signature sig_len {sig_len} exceeds the file")
    body = start - sig_len - key_id_len - signer_len
    return body, algo, hash_, id_type, signer_len, key_id_len, sig_len


def body_length(content: bytes | memoryview) -> int:
    """Length of the module without its signature trailer, from the trailer's sizes alone
    (the signature itself is not decoded).  SignatureError if the sizes do not fit."""
    t = _trailer(content)
    return len(content) if t is None else t[0]


def split(content: bytes | memoryview) -> tuple[int, ModuleSignature | None]:
    """Return (length of the module body, parsed signature or None when there is no trailer).

    Raises SignatureError when the trailer is present but malformed or its sizes do
    not fit the file.
    """
    t = _trailer(content)
    if t is None:
        return len(content), None
    body, algo, hash_, id_type, signer_len, key_id_len, sig_len = t
    sig_start = body + signer_len + key_id_len
    raw = bytes(content[sig_start:sig_start + sig_len])
    kmod_reads = True
    if id_type == PKEY_ID_PKCS7:
        try:
            si = _first_signer(pkcs7.parse_signed_data(raw, pkcs7.OPENSSL))
        except pkcs7.Pkcs7Error:
            kmod_reads = False
            si = _first_signer(pkcs7.parse_signed_data(raw, pkcs7.KERNEL))  # or raise
        cn = pkcs7.common_name(si.issuer) if si.issuer is not None else None
        signer = cn or ""
        by_skid = si.skid is not None
        key_id = si.skid if si.skid is not None else si.serial_magnitude
        name = pkcs7.DIGEST_OIDS.get(si.digest_algo)
        hash_algo = name if name in PKEY_HASH_ALGO else "unknown"
        signature = si.signature
    else:
        key_id = bytes(content[sig_start - key_id_len:sig_start])
        signer = _c_string(bytes(content[body:sig_start - key_id_len]))
        hash_algo = PKEY_HASH_ALGO[hash_]
        signature = raw
        by_skid = False
    sig = ModuleSignature(algo, hash_, id_type, signer_len, key_id_len, sig_len, raw,
                          signer, key_id, hash_algo, signature, by_skid, kmod_reads)
    return body, sig


def _first_signer(sd: pkcs7.SignedData) -> pkcs7.SignerInfo:
    """fill_pkcs7: the first SignerInfo (kmod gives up without one)."""
    if not sd.signer_infos:
        raise SignatureError("PKCS#7 message has no signer")
    return sd.signer_infos[0]


def parse_appended(content: bytes | memoryview) -> ModuleSignature | None:
    """The appended signature of a (decompressed) module, or None if unsigned."""
    return split(content)[1]


def modinfo_fields(content: bytes | memoryview) -> list[tuple[str, str]]:
    """The signature entries kmod 30's modinfo appends, in order.

    Empty when kmod shows none: no trailer, a malformed one, or a PKCS#7 message
    OpenSSL's decoder refuses (a signer named by subjectKeyIdentifier, say).
    """
    try:
        sig = parse_appended(content)
    except SignatureError:
        return []
    if sig is None or not sig.kmod_reads:
        return []
    return [
        ("sig_id", sig.id_type_name),
        ("signer", sig.signer),
        ("sig_key", format_hex(sig.key_id)),
        ("sig_hashalgo", sig.hash_algo),
        ("signature", format_hex(sig.signature)),
    ]


def _c_string(b: bytes) -> str:
    """Bytes up to the first NUL, as C's %s would print them."""
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

"""The module signature trailer: ``module ‖ signature ‖ struct module_signature ‖ MAGIC``.

This is the read side shared by modinfo, verify and strip-sig.  ``content`` is
always the *decompressed* module.  The kernel's own acceptance rules (which are
stricter) live in :mod:`lkm.signing`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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

# digest OID -> name in the kernel's hash_algo_name table
HASH_OIDS = {
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "1.3.36.3.2.1": "rmd160",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "1.2.156.10197.1.401": "sm3",
}

_OID_COMMON_NAME = "2.5.4.3"
_MODSIG = struct.Struct(">BBBBB3xI")


@dataclass(frozen=True)
class ModuleSignature:
    """A parsed signature trailer.

    For PKCS#7 (id_type 2) ``signer``, ``key_id``, ``hash_algo`` and ``signature``
    come from the first SignerInfo, as kmod reads them with OpenSSL: issuer
    commonName, serial number magnitude (or the subjectKeyIdentifier when the
    signer is named by SKID), digest algorithm name, encrypted digest.  For the
    old PGP/X509 id types they are kmod's raw slices of the trailer.
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
    if id_type == PKEY_ID_PKCS7:
        # the DER fast path answers for the usual shape; asn1crypto for the rest
        signer, key_id, hash_algo, signature, by_skid = (_parse_pkcs7_fast(raw)
                                                         or _parse_pkcs7(raw))
    else:
        key_id = bytes(content[sig_start - key_id_len:sig_start])
        signer = _c_string(bytes(content[body:sig_start - key_id_len]))
        hash_algo = PKEY_HASH_ALGO[hash_]
        signature = raw
        by_skid = False
    sig = ModuleSignature(algo, hash_, id_type, signer_len, key_id_len, sig_len, raw,
                          signer, key_id, hash_algo, signature, by_skid)
    return body, sig


def parse_appended(content: bytes | memoryview) -> ModuleSignature | None:
    """The appended signature of a (decompressed) module, or None if unsigned."""
    return split(content)[1]


def strip(content: bytes | memoryview) -> bytes:
    """The module without its signature trailer (unchanged if unsigned)."""
    return bytes(content[:body_length(content)])


def modinfo_fields(content: bytes | memoryview) -> list[tuple[str, str]]:
    """The signature entries kmod 30's modinfo appends, in order.

    Empty when kmod shows none: no trailer, a malformed one, or a PKCS#7 signer
    named by subjectKeyIdentifier (OpenSSL's PKCS7 decoder rejects those).
    """
    try:
        sig = parse_appended(content)
    except SignatureError:
        return []
    if sig is None or sig.by_skid:
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


def _parse_pkcs7(raw: bytes) -> tuple[str, bytes, str, bytes, bool]:
    """(signer, key_id, hash_algo, signature, by_skid) of the first SignerInfo."""
    from asn1crypto import cms

    try:
        info = cms.ContentInfo.load(raw)
        if info["content_type"].dotted != "1.2.840.113549.1.7.2":
            raise SignatureError("PKCS#7 message is not signedData")
        signer_infos = info["content"]["signer_infos"]
        if len(signer_infos) == 0:
            raise SignatureError("PKCS#7 message has no signer")
        si = signer_infos[0]
        sid = si["sid"]
        by_skid = sid.name == "subject_key_identifier"
        if by_skid:
            key_id = bytes(sid.chosen.native)
            signer = ""
        else:
            ias = sid.chosen
            serial = abs(int(ias["serial_number"].native))
            key_id = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
            signer = _issuer_cn(ias["issuer"])
        oid = si["digest_algorithm"]["algorithm"].dotted
        hash_algo = HASH_OIDS.get(oid, "unknown")
        signature = bytes(si["signature"].native)
    except SignatureError:
        raise
    except Exception as e:  # asn1crypto raises ValueError, TypeError, KeyError... on bad DER
        raise SignatureError(f"malformed PKCS#7 message: {e}") from None
    return signer, key_id, hash_algo, signature, by_skid


# --- fast path (added for modinfo/depmod speed): a direct DER walk of the usual shape of a
# module signature; anything unusual returns None and asn1crypto decides.

_SIGNED_DATA_DER = bytes.fromhex("2a864886f70d010702")  # 1.2.840.113549.1.7.2
_CN_DER = bytes.fromhex("550403")  # 2.5.4.3
_STRING_TAGS = frozenset((0x0C, 0x13, 0x14, 0x16, 0x1C, 0x1E))  # DirectoryString (+ IA5)


def _der(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos`` (ValueError if bad)."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, n = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise ValueError("bad length")
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if pos + n > end:
        raise ValueError("element exceeds its container")
    return tag, pos, pos + n


def _oid_dotted(b: bytes) -> str:
    if not b:
        raise ValueError("empty OID")
    first = b[0]
    if first & 0x80:
        raise ValueError("long first OID arc")
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    v = 0
    for c in b[1:]:
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            arcs.append(v)
            v = 0
    return ".".join(map(str, arcs))


def _parse_pkcs7_fast(raw: bytes) -> tuple[str, bytes, str, bytes, bool] | None:
    """_parse_pkcs7 for a signer named by issuer and serial whose issuer has a commonName;
    None for any other shape (the asn1crypto path then decides)."""
    try:
        t, s, e = _der(raw, 0, len(raw))  # ContentInfo
        if t != 0x30:
            return None
        t, p, q = _der(raw, s, e)
        if t != 0x06 or raw[p:q] != _SIGNED_DATA_DER:
            return None
        t, s, q = _der(raw, q, e)
        if t != 0xA0 or q != e:
            return None
        t, s, e = _der(raw, s, q)  # SignedData
        if t != 0x30 or e != q:
            return None
        pos = s
        for want in (0x02, 0x31, 0x30):  # version, digestAlgorithms, contentInfo
            t, p, pos = _der(raw, pos, e)
            if t != want:
                return None
        t, p, q = _der(raw, pos, e)
        while t in (0xA0, 0xA1):  # certificates, crls
            t, p, q = _der(raw, q, e)
        if t != 0x31 or p == q or q != e:  # signerInfos, the last field
            return None
        first = None
        pos = p
        while pos < q:
            t, s, pos = _der(raw, pos, q)
            if t != 0x30:
                return None
            first = first or (s, pos)
        assert first is not None
        s, e = first  # the first SignerInfo
        t, p, q = _der(raw, s, e)  # version
        if t != 0x02:
            return None
        t, p, sid_end = _der(raw, q, e)
        if t != 0x30:
            return None  # named by subjectKeyIdentifier
        t, np_, nq = _der(raw, p, sid_end)  # issuer Name
        if t != 0x30:
            return None
        signer = None
        rdn = np_
        while rdn < nq:
            t, ap, rdn = _der(raw, rdn, nq)
            if t != 0x31:
                return None
            while ap < rdn:
                t, vp, ap = _der(raw, ap, rdn)
                if t != 0x30:
                    return None
                t, op, oq = _der(raw, vp, ap)
                if t != 0x06:
                    return None
                t, cp, cq = _der(raw, oq, ap)
                if cq != ap:
                    return None
                if signer is None and raw[op:oq] == _CN_DER:
                    if t not in _STRING_TAGS:
                        return None
                    signer = _c_string(raw[cp:cq])
        if signer is None:
            return None
        t, sp, sq = _der(raw, nq, sid_end)  # serialNumber
        if t != 0x02 or sq != sid_end or sp == sq:
            return None
        serial = abs(int.from_bytes(raw[sp:sq], "big", signed=True))
        key_id = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
        t, p, q = _der(raw, sid_end, e)  # digestAlgorithm
        if t != 0x30:
            return None
        t, op, oq = _der(raw, p, q)
        if t != 0x06:
            return None
        hash_algo = HASH_OIDS.get(_oid_dotted(raw[op:oq]))
        if hash_algo is None:
            return None
        t, p, q = _der(raw, q, e)
        if t == 0xA0:  # authenticatedAttributes
            t, p, q = _der(raw, q, e)
        if t != 0x30:  # digestEncryptionAlgorithm
            return None
        t, p, q = _der(raw, q, e)
        if t != 0x04:  # encryptedDigest
            return None
        if q != e:
            t, _, end = _der(raw, q, e)  # unauthenticatedAttributes
            if t != 0xA1 or end != e:
                return None
        return signer, key_id, hash_algo, raw[p:q], False
    except ValueError:
        return None


def _issuer_cn(name: object) -> str:
    """kmod's x509_name_to_str: the first commonName, else the last entry, else ""."""
    from asn1crypto.core import Choice

    entries = [atv for rdn in name.chosen for atv in rdn]  # type: ignore[attr-defined]
    if not entries:
        return ""
    chosen = entries[-1]
    for atv in entries:
        if atv["type"].dotted == _OID_COMMON_NAME:
            chosen = atv
            break
    value = chosen["value"]
    if isinstance(value, Choice):
        value = value.chosen
    return _c_string(bytes(value.contents or b""))

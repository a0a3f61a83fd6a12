"""DER/BER and PKCS#7 SignedData: lkm's one reader and one writer.

The reader walks a module signature's PKCS#7 message without a general ASN.1
library.  It reads the message the way one of two consumers does, chosen by a
:class:`Dialect`:

``KERNEL``
    The kernel's ``pkcs7_parse_message`` (crypto/asymmetric_keys/pkcs7.asn1 and
    pkcs7_parser.c over lib/asn1_decoder.c), which decides whether a module
    signature is usable at all.
``OPENSSL``
    kmod 30's modinfo, which reads the message with OpenSSL's ``d2i_PKCS7``
    (libkmod/libkmod-signature.c ``fill_pkcs7``) and prints nothing when that fails.

What each accepts (and what lkm decided where the two differ or the consumer is
too lax to copy):

====================================  ==========================  =====================
input                                 KERNEL                      OPENSSL
====================================  ==========================  =====================
message longer than 65535 bytes       EMSGSIZE (asn1_decoder)     accepted
long-form length of 3+ octets         EBADMSG "Unsupported        accepted (leading
                                      length" (at most 2)         zeros allowed)
long-form length octets ending their  accepted                    refused
container (``05 81 00`` last)                                     (asn1_get_length's
                                                                  ``max < i + 1``)
indefinite length                     constructed elements only   same
indefinite AlgorithmIdentifier        EBADMSG (its parameters     accepted
without parameters                    ANY OPTIONAL matches the
                                      end-of-contents octets)
high tag number (0x1f form)           EBADMSG "Long tag not       refused (no field
                                      supported"                  of the grammar has one)
constructed form of INTEGER, OID,     refused (the kernel would   refused (OpenSSL
OCTET STRING                          take the raw contents)      joins the pieces)
INTEGER with redundant sign octet     accepted                    refused (OpenSSL 3
or empty; malformed OID encoding                                  ``c2i_ibuf``, c2i OID)
digestAlgorithms, signerInfos as      accepted                    refused
SEQUENCE OF; certificates [2],
crls [3], authattrs [2], unauth [3]
signer named by subjectKeyIdentifier  accepted (SignerInfo v3)    refused (PKCS#7 has
                                                                  no CMS SignerIdentifier)
SignedData ending early (before       accepted with no SignerInfo refused
signerInfos), content [0] absent      (then EINVAL "Inconsistently
                                      supplied authAttrs")
bytes inside a constructed element    EBADMSG "Cons length        refused
after its last field                  error"
bytes after the ContentInfo           ignored                     ignored
certificates and CRLs                 skipped, not parsed         skipped, not parsed
====================================  ==========================  =====================

The kernel's column was checked against Debian's 6.1 under QEMU (tests/test_signing.py),
OpenSSL's against kmod 30's modinfo (tests/test_signature.py).

Everything else on the path (tags, lengths within their container, every
SignerInfo's fields, issuer Names as SEQUENCE OF SET OF {OID, ANY}) is checked by
both; an error is :class:`Pkcs7Error` carrying the kernel's errno (EBADMSG for the
grammar).  The kernel's own checks of values (content type, versions, known
digest and public-key algorithms) run where its parser runs them, in document
order, through :class:`Actions` (lkm.signing.verify supplies the kernel's).

The writer (:func:`signed_data`) produces the DER that scripts/sign-file's
``CMS_sign(..., CMS_NOCERTS | CMS_BINARY | CMS_DETACHED | CMS_NOATTR)`` writes;
:func:`certificate_ids` reads what it needs from an X.509 certificate.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import NamedTuple

from lkm.errors import SignatureError

MAX_KERNEL_MESSAGE = 65535  # lib/asn1_decoder.c: datalen > 65535 -> -EMSGSIZE

# tags (identifier octets)
INTEGER, OCTET_STRING, NULL, OID = 0x02, 0x04, 0x05, 0x06
SEQUENCE, SET = 0x30, 0x31
CONTEXT_0, CONTEXT_1, CONTEXT_2, CONTEXT_3 = 0xA0, 0xA1, 0xA2, 0xA3  # constructed [n]
IMPLICIT_0 = 0x80  # [0] IMPLICIT OCTET STRING (SubjectKeyIdentifier)


def oid(dotted: str) -> bytes:
    """The DER contents of an OBJECT IDENTIFIER given in dotted form."""
    parts = [int(x) for x in dotted.split(".")]
    out = bytearray()
    for n in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def oid_dotted(contents: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's contents (for messages; lenient)."""
    if not contents:
        return ""
    arcs: list[int] = []
    v = 0
    for c in contents:
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            arcs.append(v)
            v = 0
    if not arcs:
        return contents.hex()
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


# the OID registry (include/linux/oid_registry.h): the ones module signatures use
OID_SIGNED_DATA = oid("1.2.840.113549.1.7.2")
OID_DATA = oid("1.2.840.113549.1.7.1")
OID_MS_INDIRECT_DATA = oid("1.3.6.1.4.1.311.2.1.4")  # Authenticode
OID_RSA_ENCRYPTION = oid("1.2.840.113549.1.1.1")
OID_COMMON_NAME = oid("2.5.4.3")
OID_SUBJECT_KEY_IDENTIFIER = oid("2.5.29.14")

DIGEST_OIDS: dict[bytes, str] = {oid(dotted): name for dotted, name in (
    ("1.2.840.113549.2.4", "md4"),
    ("1.2.840.113549.2.5", "md5"),
    ("1.3.14.3.2.26", "sha1"),
    ("1.3.36.3.2.1", "rmd160"),
    ("2.16.840.1.101.3.4.2.1", "sha256"),
    ("2.16.840.1.101.3.4.2.2", "sha384"),
    ("2.16.840.1.101.3.4.2.3", "sha512"),
    ("2.16.840.1.101.3.4.2.4", "sha224"),
    ("2.16.840.1.101.3.4.2.8", "sha3-256"),
    ("2.16.840.1.101.3.4.2.9", "sha3-384"),
    ("2.16.840.1.101.3.4.2.10", "sha3-512"),
    ("1.2.156.10197.1.401", "sm3"),
    ("1.2.643.7.1.1.2.2", "streebog256"),
    ("1.2.643.7.1.1.2.3", "streebog512"),
)}
"""Digest algorithm OIDs, named as the kernel's hash_algo_name names them."""


class Pkcs7Error(SignatureError):
    """A PKCS#7 message the reader refuses; ``errno`` is what the kernel's parser
    returns for it."""

    def __init__(self, reason: str, err: int = errno.EBADMSG) -> None:
        super().__init__(reason)
        self.errno = err
        self.reason = reason


class Asn1Error(Pkcs7Error):
    """The bytes do not follow the grammar (EBADMSG); the message is asn1_decoder.c's
    ("Data overrun error", "Unexpected tag", ...) and where it happened."""


@dataclass(frozen=True)
class Dialect:
    """How a consumer reads the message (see the module docstring)."""

    name: str
    max_message: int | None  # longest message accepted (None: any)
    max_length_octets: int  # most octets of a long-form length
    cms: bool  # the CMS alternatives of pkcs7.asn1 (SEQUENCE OF, [2], [3], SKID)
    strict_primitives: bool  # minimal INTEGERs and well-formed OIDs, as OpenSSL checks
    length_needs_contents: bool  # a byte of the container must follow long length octets
    any_takes_eoc: bool  # an absent ANY OPTIONAL at an indefinite end matches the EOC


KERNEL = Dialect("kernel", MAX_KERNEL_MESSAGE, 2, cms=True, strict_primitives=False,
                 length_needs_contents=False, any_takes_eoc=True)
OPENSSL = Dialect("openssl", None, 126, cms=False, strict_primitives=True,
                  length_needs_contents=True, any_takes_eoc=False)


class Actions:
    """Checks run while the message is read, where the kernel's pkcs7_parser.c runs its
    actions; each may raise Pkcs7Error.  The base class accepts everything.

    A check must depend on nothing but the values it is given (and those seen before
    it): :func:`parse_signed_data` remembers what a class of Actions accepted.
    """

    def signeddata_version(self, version: bytes) -> None:
        """SignedData.version's contents (pkcs7_note_signeddata_version)."""

    def data_type(self, oid: bytes) -> None:
        """The encapsulated contentType (pkcs7_note_content)."""

    def signerinfo_version(self, version: bytes) -> None:
        """SignerInfo.version's contents (pkcs7_note_signerinfo_version)."""

    def digest_algo(self, oid: bytes) -> None:
        """SignerInfo.digestAlgorithm (pkcs7_sig_note_digest_algo)."""

    def pkey_algo(self, oid: bytes) -> None:
        """SignerInfo.digestEncryptionAlgorithm (pkcs7_sig_note_pkey_algo)."""


_NO_ACTIONS = Actions()


class SignerInfo(NamedTuple):
    """One SignerInfo: its signer named by issuer and serial number, or by SKID."""

    version: bytes  # INTEGER contents
    issuer: bytes | None  # the issuer Name's contents (its RDNs), as the kernel keeps it
    serial: bytes | None  # CertificateSerialNumber contents
    skid: bytes | None  # subjectKeyIdentifier (CMS SignerInfo v3)
    digest_algo: bytes  # OID contents
    authattrs: bool  # authenticatedAttributes present
    pkey_algo: bytes  # digestEncryptionAlgorithm OID contents
    signature: bytes  # encryptedDigest

    @property
    def serial_magnitude(self) -> bytes:
        """The serial number's magnitude, big-endian, no leading zeros (b"" for 0): what
        kmod prints as sig_key (``BN_bn2bin`` of ``ASN1_INTEGER_to_BN``)."""
        n = abs(int.from_bytes(self.serial or b"", "big", signed=True))
        return n.to_bytes((n.bit_length() + 7) // 8, "big")


class SignedData(NamedTuple):
    """What a module signature's ContentInfo holds."""

    version: bytes | None  # None when the message ends before it (kernel dialect)
    data_type: bytes | None  # the encapsulated contentType OID contents
    data_attached: bool  # encapsulated content present (not a detached signature)
    signer_infos: tuple[SignerInfo, ...]


# --- the reader ----------------------------------------------------------------------


def read_tlv(buf: bytes, pos: int, end: int, dialect: Dialect = KERNEL
             ) -> tuple[int, int, int, int]:
    """(tag, contents start, contents end, element end) of the element at ``pos``,
    which must lie within ``end``; Pkcs7Error (with the kernel's message) if not."""
    if end - pos < 2:
        raise Asn1Error("Data overrun error")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise Asn1Error("Long tag not supported")
    n = buf[pos + 1]
    pos += 2
    if n < 0x80:
        stop = pos + n
        if stop > end:
            raise Asn1Error("Data overrun error")
        return tag, pos, stop, stop
    if n == 0x80:
        if not tag & 0x20:
            raise Asn1Error("Indefinite len primitive not permitted")
        stop = _indefinite_end(buf, pos, end)
        return tag, pos, stop, stop + 2
    k = n & 0x7F
    if k > dialect.max_length_octets:
        raise Asn1Error("Unsupported length")
    if k > end - pos - dialect.length_needs_contents:
        raise Asn1Error("Data overrun error")
    length = int.from_bytes(buf[pos:pos + k], "big")
    pos += k
    if length > end - pos:
        raise Asn1Error("Data overrun error")
    return tag, pos, pos + length, pos + length


def _indefinite_end(buf: bytes, pos: int, end: int) -> int:
    """Where the end-of-contents octets of the indefinite-length element whose contents
    start at ``pos`` begin (asn1_find_indefinite_length)."""
    level = 1
    while True:
        if end - pos < 2:
            raise Asn1Error("Missing EOC in indefinite len cons" if pos == end
                            else "Data overrun error")
        tag = buf[pos]
        if tag == 0:
            if buf[pos + 1] != 0:
                raise Asn1Error("Invalid length EOC")
            level -= 1
            if level == 0:
                return pos
            pos += 2
            continue
        pos += 1
        if tag & 0x1F == 0x1F:
            while True:
                if end - pos < 2:
                    raise Asn1Error("Data overrun error")
                pos += 1
                if not buf[pos - 1] & 0x80:
                    break
        n = buf[pos]
        pos += 1
        if n == 0x80:
            if not tag & 0x20:
                raise Asn1Error("Indefinite len primitive not permitted")
            level += 1
            continue
        if n > 0x80:
            k = n & 0x7F
            if k > 7:
                raise Asn1Error("Unsupported length")
            if k > end - pos:
                raise Asn1Error("Data overrun error")
            n = int.from_bytes(buf[pos:pos + k], "big")
            pos += k
        pos += n


def _integer_minimal(v: bytes) -> bool:
    """OpenSSL 3's c2i_ibuf: no empty INTEGER, no redundant leading 0x00 or 0xff."""
    if len(v) < 2:
        return len(v) == 1
    if v[0] == 0:
        return v[1] >= 0x80
    return not (v[0] == 0xFF and v[1] >= 0x80 and any(v[1:]))


def _oid_well_formed(v: bytes) -> bool:
    """OpenSSL's c2i_ASN1_OBJECT: non-empty, no sub-identifier starting with 0x80, the
    last octet ending one."""
    return bool(v) and v[-1] < 0x80 and _PADDED_ARC.search(v) is None


_PADDED_ARC = re.compile(rb"(?:^|[\x00-\x7f])\x80")


def _cons_error(what: str) -> Asn1Error:
    return Asn1Error(f"Cons length error in {what}")


class _Reader:
    """One message being read: the bytes, the dialect and the actions."""

    __slots__ = ("acts", "buf", "dialect", "octets", "signature_at", "strict")

    def __init__(self, buf: bytes, dialect: Dialect, acts: Actions) -> None:
        self.buf = buf
        self.dialect = dialect
        self.octets = dialect.max_length_octets
        self.strict = dialect.strict_primitives
        self.acts = acts
        self.signature_at = (0, 0)  # contents of the last encryptedDigest read

    def get(self, pos: int, end: int, tags: int | tuple[int, ...] | None, what: str
            ) -> tuple[int, int, int, int]:
        """read_tlv, requiring one of ``tags`` (None: any tag)."""
        # read_tlv's definite-length case inline (this is the hot loop); anything
        # else, errors included, is read_tlv's to decide
        buf = self.buf
        if end - pos >= 2:
            tag = buf[pos]
            n = buf[pos + 1]
            p = pos + 2
            if n > 0x80 and n - 0x80 <= self.octets and n - 0x80 < end - p:
                k = n - 0x80
                n = int.from_bytes(buf[p:p + k], "big")
                p += k
            if n < 0x80 or p != pos + 2:
                stop = p + n
                if stop <= end and tag & 0x1F != 0x1F:
                    if tag == tags or tags is None or (type(tags) is tuple and tag in tags):
                        return tag, p, stop, stop
                    raise Asn1Error(f"Unexpected tag {tag:#04x} for {what}")
        t = read_tlv(buf, pos, end, self.dialect)
        if t[0] == tags or tags is None or (isinstance(tags, tuple) and t[0] in tags):
            return t
        raise Asn1Error(f"Unexpected tag {t[0]:#04x} for {what}")

    def integer(self, pos: int, end: int, what: str) -> tuple[bytes, int]:
        _t, s, e, nxt = self.get(pos, end, INTEGER, what)
        v = self.buf[s:e]
        if self.strict and not _integer_minimal(v):
            raise Asn1Error(f"INTEGER {what} is empty or padded")
        return v, nxt

    def oid(self, pos: int, end: int, what: str) -> tuple[bytes, int]:
        _t, s, e, nxt = self.get(pos, end, OID, what)
        v = self.buf[s:e]
        if self.strict and not _oid_well_formed(v):
            raise Asn1Error(f"OBJECT IDENTIFIER {what} is malformed")
        return v, nxt

    def algorithm(self, pos: int, end: int, what: str) -> tuple[bytes, int]:
        """AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }."""
        _t, s, e, nxt = self.get(pos, end, SEQUENCE, what)
        algo, p = self.oid(s, e, what)
        if p != e:
            if self.get(p, e, None, "parameters")[3] != e:
                raise _cons_error(what)
        elif nxt != e and self.dialect.any_takes_eoc:
            raise Asn1Error(f"Missing EOC in indefinite len cons ({what} without parameters)")
        return algo, nxt

    def name(self, pos: int, end: int) -> tuple[int, int, int]:
        """A Name (SEQUENCE OF SET OF {OID, ANY}), checked; (contents start, end, next)."""
        _t, s, e, nxt = self.get(pos, end, SEQUENCE, "issuer Name")
        for _ in self.name_attributes(s, e):
            pass
        return s, e, nxt

    def name_attributes(self, pos: int, end: int) -> list[tuple[bytes, int, int, int]]:
        """(type OID, value tag, value start, value end) of each AttributeValueAssertion of
        the Name contents ``[pos, end)``, in order."""
        out = []
        while pos < end:
            _t, rs, re_, pos = self.get(pos, end, SET, "RelativeDistinguishedName")
            while rs < re_:
                _t, a, ae, rs = self.get(rs, re_, SEQUENCE, "AttributeValueAssertion")
                typ, a = self.oid(a, ae, "attributeType")
                vt, vs, ve, a = self.get(a, ae, None, "attributeValue")
                if a != ae:
                    raise _cons_error("AttributeValueAssertion")
                out.append((typ, vt, vs, ve))
        return out

    def signed_data(self) -> SignedData:
        """The ContentInfo at the start of the buffer.

        In the kernel dialect a ContentInfo or SignedData may end before any of its
        fields: asn1_ber_decoder skips every match at the end of a container, so the
        message parses with no SignerInfo.
        """
        buf, acts, cms = self.buf, self.acts, self.dialect.cms
        version = data_type = None
        attached = False
        _t, s, e, _n = self.get(0, len(buf), SEQUENCE, "ContentInfo")
        if s == e and cms:
            return SignedData(version, data_type, attached, ())
        ctype, p = self.oid(s, e, "contentType")
        if ctype != OID_SIGNED_DATA:  # pkcs7_check_content_type
            raise Pkcs7Error("Only support pkcs7_signedData type", errno.EINVAL)
        if p == e and cms:  # content [0] EXPLICIT SignedData OPTIONAL
            return SignedData(version, data_type, attached, ())
        _t, s, ce, p = self.get(p, e, CONTEXT_0, "ContentInfo content")
        if p != e:
            raise _cons_error("ContentInfo")
        _t, p, e, q = self.get(s, ce, SEQUENCE, "SignedData")
        if q != ce:
            raise _cons_error("ContentInfo content")
        infos: list[SignerInfo] = []
        sets = (SET, SEQUENCE) if cms else SET

        if p != e or not cms:
            version, p = self.integer(p, e, "SignedData version")
            acts.signeddata_version(version)
        if p != e or not cms:
            _t, a, b, p = self.get(p, e, sets, "digestAlgorithms")
            while a < b:
                _algo, a = self.algorithm(a, b, "DigestAlgorithmIdentifier")
        if p != e or not cms:
            _t, a, b, p = self.get(p, e, SEQUENCE, "contentInfo")
            data_type, a = self.oid(a, b, "contentInfo contentType")
            if a != b:
                _t, x, y, a = self.get(a, b, CONTEXT_0, "contentInfo content")
                if x != y:  # Data ::= ANY: one element, or none
                    x = self.get(x, y, None, "Data")[3]
                    if x != y:
                        raise _cons_error("contentInfo content")
                    attached = True
            if a != b:
                raise _cons_error("contentInfo")
            acts.data_type(data_type)
        for tags in ((CONTEXT_0, CONTEXT_2), (CONTEXT_1, CONTEXT_3)):  # certificates, crls
            if p != e or not cms:
                tag, _a, _b, q = self.get(p, e, None, "certificates or crls")
                if tag in (tags if cms else tags[:1]):
                    p = q
        if p != e or not cms:
            _t, a, b, p = self.get(p, e, sets, "signerInfos")
            if p != e:
                raise _cons_error("SignedData")
            while a < b:
                info, a = self.signer_info(a, b)
                infos.append(info)
        return SignedData(version, data_type, attached, tuple(infos))

    def signer_info(self, pos: int, end: int) -> tuple[SignerInfo, int]:
        buf, acts, cms = self.buf, self.acts, self.dialect.cms
        _t, s, e, nxt = self.get(pos, end, SEQUENCE, "SignerInfo")
        version, p = self.integer(s, e, "SignerInfo version")
        acts.signerinfo_version(version)
        tag, a, b, p = self.get(p, e, (SEQUENCE, IMPLICIT_0) if cms else SEQUENCE, "sid")
        issuer = serial = skid = None
        if tag == SEQUENCE:  # IssuerAndSerialNumber
            ns, ne, a = self.name(a, b)
            issuer = buf[ns:ne]
            serial, a = self.integer(a, b, "serialNumber")
            if a != b:
                raise _cons_error("IssuerAndSerialNumber")
        else:
            skid = buf[a:b]
        digest, p = self.algorithm(p, e, "digestAlgorithm")
        acts.digest_algo(digest)
        tag, a, b, q = self.get(p, e, None, "authenticatedAttributes")
        authattrs = tag in ((CONTEXT_0, CONTEXT_2) if cms else (CONTEXT_0,))
        if authattrs:
            p = q
        pkey, p = self.algorithm(p, e, "digestEncryptionAlgorithm")
        acts.pkey_algo(pkey)
        _t, a, b, p = self.get(p, e, OCTET_STRING, "encryptedDigest")
        signature = buf[a:b]
        self.signature_at = (a, b)
        if p != e:
            p = self.get(p, e, (CONTEXT_1, CONTEXT_3) if cms else CONTEXT_1,
                         "unauthenticatedAttributes")[3]
        if p != e:
            raise _cons_error("SignerInfo")
        return SignerInfo(version, issuer, serial, skid, digest, authattrs, pkey,
                          signature), nxt


def parse_signed_data(raw: bytes, dialect: Dialect = KERNEL, actions: Actions | None = None
                      ) -> SignedData:
    """The SignedData of a module signature's PKCS#7 ContentInfo, read as ``dialect``
    reads it; Pkcs7Error (with its errno) when that consumer refuses the message.

    ``actions`` see each value where the kernel's parser checks it and may refuse it.

    The modules of a tree carry messages that differ only in the signature value: the
    reader never looks inside encryptedDigest, so a message with one SignerInfo whose
    bytes around the signature equal those of the last one accepted (same dialect,
    same class of actions, same length) is that message with its own signature.
    """
    n = len(raw)
    if dialect.max_message is not None and n > dialect.max_message:
        raise Pkcs7Error("PKCS#7 message larger than the ASN.1 decoder accepts",
                         errno.EMSGSIZE)
    acts = actions or _NO_ACTIONS
    key = (dialect, type(acts), n)
    seen = _ACCEPTED.get(key)
    if seen is not None:
        a, b, head, tail, sd = seen
        if raw.startswith(head) and raw.endswith(tail):
            return sd._replace(signer_infos=(sd.signer_infos[0]._replace(signature=raw[a:b]),))
    r = _Reader(raw, dialect, acts)
    sd = r.signed_data()
    if len(sd.signer_infos) == 1:
        a, b = r.signature_at
        if len(_ACCEPTED) >= 64:
            _ACCEPTED.clear()
        _ACCEPTED[key] = (a, b, raw[:a], raw[b:], sd)
    return sd


# (dialect, Actions class, message length) -> the last message with one SignerInfo that
# was accepted: (signature start, end, the bytes before, the bytes after, its SignedData)
_ACCEPTED: dict[tuple[Dialect, type[Actions], int],
                tuple[int, int, bytes, bytes, SignedData]] = {}


def common_name(issuer: bytes) -> str | None:
    """kmod's x509_name_to_str of a Name's contents: the value of the first commonName,
    else of the last attribute, up to its first NUL (None for an empty Name)."""
    try:
        attrs = _Reader(issuer, OPENSSL, _NO_ACTIONS).name_attributes(0, len(issuer))
    except Pkcs7Error:
        return None
    if not attrs:
        return None
    _typ, _tag, s, e = next((a for a in attrs if a[0] == OID_COMMON_NAME), attrs[-1])
    return issuer[s:e].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


# --- certificates --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateIds:
    """The ways a PKCS#7 SignerInfo can name an X.509 certificate."""

    serial: bytes  # the serialNumber INTEGER, header included
    issuer: bytes  # the issuer Name, header included
    skid: bytes | None  # the subjectKeyIdentifier extension's key identifier

    @property
    def issuer_serial_id(self) -> bytes:
        """serial contents ‖ issuer contents: asymmetric_key_generate_id() as both
        x509_cert_parser.c and pkcs7_parser.c build it."""
        return _contents(self.serial) + _contents(self.issuer)


def _contents(tlv: bytes) -> bytes:
    _t, s, e, _n = read_tlv(tlv, 0, len(tlv), OPENSSL)
    return tlv[s:e]


def certificate_ids(der: bytes) -> CertificateIds:
    """Serial number, issuer and SKID of a DER X.509 certificate; Pkcs7Error if its
    tbsCertificate cannot be walked."""
    r = _Reader(der, OPENSSL, _NO_ACTIONS)
    _t, s, e, _n = r.get(0, len(der), SEQUENCE, "Certificate")
    _t, s, e, _n = r.get(s, e, SEQUENCE, "tbsCertificate")
    tag, _a, _b, p = read_tlv(der, s, e, OPENSSL)
    if tag == CONTEXT_0:  # version
        s = p
    _t, _a, _b, p = r.get(s, e, INTEGER, "serialNumber")
    serial = der[s:p]
    p = r.get(p, e, SEQUENCE, "signature")[3]
    q = r.get(p, e, SEQUENCE, "issuer")[3]
    issuer = der[p:q]
    for what in ("validity", "subject", "subjectPublicKeyInfo"):
        q = r.get(q, e, SEQUENCE, what)[3]
    skid = None
    while q < e:
        tag, a, b, q = read_tlv(der, q, e, OPENSSL)
        if tag != CONTEXT_3:
            continue  # issuerUniqueID, subjectUniqueID
        _t, a, b, _n = r.get(a, b, SEQUENCE, "extensions")
        while a < b:
            _t, x, y, a = r.get(a, b, SEQUENCE, "Extension")
            ext, x = r.oid(x, y, "extnID")
            if ext != OID_SUBJECT_KEY_IDENTIFIER:
                continue
            tag, vs, ve, x = read_tlv(der, x, y, OPENSSL)
            if tag == 0x01:  # critical BOOLEAN
                tag, vs, ve, x = read_tlv(der, x, y, OPENSSL)
            if tag != OCTET_STRING:
                raise Asn1Error("Unexpected tag for extnValue")
            _t, ks, ke, _n = r.get(vs, ve, OCTET_STRING, "keyIdentifier")
            skid = der[ks:ke]
    return CertificateIds(serial, issuer, skid)


# --- the writer ----------------------------------------------------------------------


def der(tag: int, *contents: bytes) -> bytes:
    """One DER element: ``tag``, the minimal definite length, the joined contents."""
    body = b"".join(contents)
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def algorithm_identifier(algo: bytes, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier with the parameters absent (None) or given as DER."""
    return der(SEQUENCE, der(OID, algo), parameters or b"")


def signed_data(digest_algo: bytes, pkey_algo: bytes, signature: bytes,
                cert: CertificateIds, use_skid: bool = False) -> bytes:
    """The detached PKCS#7 ContentInfo sign-file writes: no certificates, no signed
    attributes, digest parameters absent; the signer named by issuer and serial number
    (SignedData and SignerInfo v1) or, with ``use_skid``, by subjectKeyIdentifier (v3).

    ``pkey_algo`` is the full digestEncryptionAlgorithm AlgorithmIdentifier.
    """
    if use_skid:
        if cert.skid is None:
            raise SignatureError("certificate has no subjectKeyIdentifier")
        version, sid = b"\x03", der(IMPLICIT_0, cert.skid)
    else:
        version, sid = b"\x01", der(SEQUENCE, cert.issuer, cert.serial)
    digest = algorithm_identifier(digest_algo)
    signer = der(SEQUENCE, der(INTEGER, version), sid, digest, pkey_algo,
                 der(OCTET_STRING, signature))
    content = der(SEQUENCE, der(INTEGER, version), der(SET, digest),
                  der(SEQUENCE, der(OID, OID_DATA)), der(SET, signer))
    return der(SEQUENCE, der(OID, OID_SIGNED_DATA), der(CONTEXT_0, content))


__all__ = [
    "DIGEST_OIDS", "KERNEL", "OPENSSL", "Actions", "Asn1Error", "CertificateIds", "Dialect",
    "Pkcs7Error", "SignedData", "SignerInfo", "algorithm_identifier", "certificate_ids",
    "common_name", "der", "oid", "oid_dotted", "parse_signed_data", "read_tlv",
    "signed_data",
]

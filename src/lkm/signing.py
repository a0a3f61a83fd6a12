"""Module signing and verification, as scripts/sign-file writes and the kernel checks.

Signing builds the detached PKCS#7 (CMS) SignedData that sign-file's OpenSSL
``CMS_sign(... CMS_NOCERTS|CMS_BINARY|CMS_DETACHED ...)`` with ``CMS_NOATTR``
produces: no certificates, no signed attributes, digest parameters absent,
signer named by issuer and serial number (SignerInfo v1) or, with ``-k``, by
subjectKeyIdentifier (v3).  The structure is encoded with asn1crypto and the
signature made with cryptography, which reproduces sign-file byte for byte for
RSA keys (ECDSA signatures are randomised).

Verification follows the kernel (kernel/module/signing.c, module_signature.c,
crypto/asymmetric_keys/pkcs7_*.c): the result is one of the :class:`Status`
values with the errno the kernel's mod_verify_sig would return.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lkm.errors import LkmError, SignatureError
from lkm.signature import MAGIC, MODULE_SIGNATURE_SIZE, PKEY_ID_PKCS7

MODULE_SUFFIXES = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")


class SigningError(LkmError):
    """A key, certificate or option cannot be used to sign."""


# --- algorithms ------------------------------------------------------------------------


@dataclass(frozen=True)
class HashAlgo:
    name: str  # the kernel's hash_algo_name
    oid: str
    hashlib_name: str
    ecdsa_oid: str  # ecdsa-with-<hash>
    asn1_name: str  # asn1crypto DigestAlgorithmId name


HASHES: dict[str, HashAlgo] = {h.name: h for h in (
    HashAlgo("md5", "1.2.840.113549.2.5", "md5", "", "md5"),
    HashAlgo("sha1", "1.3.14.3.2.26", "sha1", "1.2.840.10045.4.1", "sha1"),
    HashAlgo("sha224", "2.16.840.1.101.3.4.2.4", "sha224", "1.2.840.10045.4.3.1", "sha224"),
    HashAlgo("sha256", "2.16.840.1.101.3.4.2.1", "sha256", "1.2.840.10045.4.3.2", "sha256"),
    HashAlgo("sha384", "2.16.840.1.101.3.4.2.2", "sha384", "1.2.840.10045.4.3.3", "sha384"),
    HashAlgo("sha512", "2.16.840.1.101.3.4.2.3", "sha512", "1.2.840.10045.4.3.4", "sha512"),
    HashAlgo("sha3-256", "2.16.840.1.101.3.4.2.8", "sha3_256", "2.16.840.1.101.3.4.3.10",
             "sha3_256"),
    HashAlgo("sha3-384", "2.16.840.1.101.3.4.2.9", "sha3_384", "2.16.840.1.101.3.4.3.11",
             "sha3_384"),
    HashAlgo("sha3-512", "2.16.840.1.101.3.4.2.10", "sha3_512", "2.16.840.1.101.3.4.3.12",
             "sha3_512"),
)}
_HASH_BY_OID = {h.oid: h for h in HASHES.values()}
# digests the kernel's PKCS#7 parser knows but that we cannot check
_KNOWN_UNSUPPORTED_DIGESTS = {
    "1.2.840.113549.2.4": "md4", "1.3.36.3.2.1": "rmd160", "1.2.156.10197.1.401": "sm3",
    "1.2.643.7.1.1.2.2": "streebog256", "1.2.643.7.1.1.2.3": "streebog512",
}

_OID_RSA = "1.2.840.113549.1.1.1"
_ECDSA_SIG_OIDS = {h.ecdsa_oid for h in HASHES.values() if h.ecdsa_oid}
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


def hash_algo(name: str) -> HashAlgo:
    """The hash named as OpenSSL's EVP_get_digestbyname accepts it (sha256, SHA256, sha3-256)."""
    key = name.lower().replace("_", "-")
    key = {"sha-1": "sha1", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384",
           "sha-512": "sha512"}.get(key, key)
    try:
        return HASHES[key]
    except KeyError:
        raise SigningError(f"unknown hash algorithm {name!r}") from None


def _crypto_hash(h: HashAlgo) -> Any:
    from cryptography.hazmat.primitives import hashes

    table: dict[str, type[hashes.HashAlgorithm]] = {
        "md5": hashes.MD5, "sha1": hashes.SHA1, "sha224": hashes.SHA224,
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
        "sha3-256": hashes.SHA3_256, "sha3-384": hashes.SHA3_384, "sha3-512": hashes.SHA3_512,
    }
    return table[h.name]()


# --- keys and certificates --------------------------------------------------------------


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


# --- signing ----------------------------------------------------------------------------


def build_pkcs7(content: bytes | memoryview, private_key: Any, cert_der: bytes,
                hash_name: str = "sha256", use_skid: bool = False) -> bytes:
    """The detached PKCS#7 signature of ``content``, encoded as sign-file does."""
    from asn1crypto import algos, cms, core, x509
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    h = hash_algo(hash_name)
    cert = x509.Certificate.load(cert_der)
    tbs = cert["tbs_certificate"]
    if isinstance(private_key, rsa.RSAPrivateKey):
        sig = private_key.sign(bytes(content), padding.PKCS1v15(), _crypto_hash(h))
        sig_alg = algos.SignedDigestAlgorithm(
            {"algorithm": _OID_RSA, "parameters": core.Null()})
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not h.ecdsa_oid:
            raise SigningError(f"ECDSA cannot sign with {h.name}")
        sig = private_key.sign(bytes(content), ec.ECDSA(_crypto_hash(h)))
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": h.ecdsa_oid})
    else:
        raise SigningError("only RSA and ECDSA keys can sign modules")
    _check_key_matches(private_key, cert_der)
    if use_skid:
        skid = cert.key_identifier
        if skid is None:
            raise SigningError("certificate has no subjectKeyIdentifier (needed by -k)")
        sid = cms.SignerIdentifier({"subject_key_identifier": skid})
        version = "v3"
    else:
        sid = cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
            {"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]})})
        version = "v1"
    digest_alg = _digest_algorithm(h)
    signer = cms.SignerInfo({
        "version": version,
        "sid": sid,
        "digest_algorithm": digest_alg,
        "signature_algorithm": sig_alg,
        "signature": sig,
    })
    signed = cms.SignedData({
        "version": version,
        "digest_algorithms": [_digest_algorithm(h)],
        "encap_content_info": {"content_type": "data"},
        "signer_infos": [signer],
    })
    out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return out


def _digest_algorithm(h: HashAlgo) -> Any:
    """AlgorithmIdentifier with parameters absent (asn1crypto's DigestAlgorithm forces NULL).

    The bare encoding, loaded back, keeps its bytes when re-encoded.
    """
    from asn1crypto import algos

    oid = algos.DigestAlgorithmId(h.oid).dump()
    return algos.DigestAlgorithm.load(b"\x30" + bytes([len(oid)]) + oid)


def _check_key_matches(private_key: Any, cert_der: bytes) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = x509.load_der_x509_certificate(cert_der).public_key()
    fmt = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if pub.public_bytes(*fmt) != private_key.public_key().public_bytes(*fmt):
        raise SigningError("private key does not match the certificate")


def signature_trailer(pkcs7: bytes) -> bytes:
    """struct module_signature {id_type PKCS#7, sig_len} and the magic."""
    return struct.pack(">BBBBB3xI", 0, 0, PKEY_ID_PKCS7, 0, 0, len(pkcs7)) + MAGIC


def append_signature(content: bytes | memoryview, pkcs7: bytes) -> bytes:
    """``content ‖ pkcs7 ‖ module_signature ‖ magic``."""
    return b"".join((content, pkcs7, signature_trailer(pkcs7)))


def sign_module(content: bytes | memoryview, private_key: Any, cert_der: bytes,
                hash_name: str = "sha256", use_skid: bool = False) -> bytes:
    """``content`` with a signature appended (the whole content is signed, as sign-file does)."""
    return append_signature(content, build_pkcs7(content, private_key, cert_der, hash_name,
                                                 use_skid))


def strip_signature(content: bytes | memoryview) -> bytes | None:
    """The module without its last signature, or None if it carries none.

    Only the trailer's sizes are read, so a damaged signature can be stripped too.
    """
    from lkm.signature import body_length

    body = body_length(content)
    return None if body == len(content) else bytes(content[:body])


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    The file keeps the mode of the one it replaces; a new file gets 0666 & ~umask.
    """
    p = Path(path)
    if mode is None:
        try:
            mode = p.stat().st_mode & 0o7777
        except OSError:
            umask = os.umask(0o22)
            os.umask(umask)
            mode = 0o666 & ~umask
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_module_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str | None]:
    """(decompressed content, compression name or None)."""
    from lkm.compress import decompress, detect

    raw = Path(path).read_bytes()
    kind = detect(raw)
    if kind is None:
        return raw, None
    return decompress(raw, kind), kind


def write_module_bytes(path: str | os.PathLike[str], content: bytes, kind: str | None,
                       mode: int | None = None) -> None:
    """Write ``content`` compressed as ``kind`` (as Kbuild's modules_install would)."""
    from lkm.compress import compress

    write_atomic(path, content if kind is None else compress(content, kind), mode)


# --- the keyring -------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A public key from an X.509 certificate, with the ids the kernel looks it up by."""

    der: bytes
    public_key: Any
    subject: str
    serial_issuer: bytes  # serial content octets ‖ issuer Name encoding
    skid: bytes | None


class Keyring:
    """Trusted certificates: the kernel's builtin (and secondary) keyring.

    ``digests`` limits the hash algorithms the kernel can compute (None: every one
    lkm knows); a signature using another gives ENOPKG, as in a kernel whose
    CONFIG_CRYPTO_SHA512 is a module not yet loaded (see builtin_digests).
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
        from asn1crypto import x509 as ax509
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        try:
            cert = x509.load_der_x509_certificate(der)
            pub = cert.public_key()
            acert = ax509.Certificate.load(der)
            tbs = acert["tbs_certificate"]
            serial_issuer = bytes(tbs["serial_number"].contents) + tbs["issuer"].dump()
            skid = acert.key_identifier
        except Exception as e:  # malformed DER from a hostile image or file
            raise SigningError(f"bad certificate: {e}") from None
        if not isinstance(pub, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            return None
        cns = [a.value for a in cert.subject if a.oid.dotted_string == "2.5.4.3"]
        subject = str(cns[0]) if cns else cert.subject.rfc4514_string()
        key = Key(der, pub, subject, serial_issuer, skid)
        self.keys.append(key)
        self._by_id.setdefault(("id", serial_issuer), key)
        if skid is not None:
            self._by_id.setdefault(("skid", skid), key)
        return key

    def find(self, kind: str, ident: bytes) -> Key | None:
        return self._by_id.get((kind, ident))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ders(self) -> list[bytes]:
        return [k.der for k in self.keys]

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> Keyring:
        """Certificates from files (PEM with any number of certificates, or DER) and
        directories (their *.pem, *.crt, *.cer, *.der, *.x509 files)."""
        ring = cls()
        for p in paths:
            p = Path(p)
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in
                           (".pem", ".crt", ".cer", ".der", ".x509")) if p.is_dir() else [p]
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


# --- verification ------------------------------------------------------------------------


class Status(enum.Enum):
    VALID = "valid"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown key"  # ENOKEY
    REJECTED = "rejected"  # EKEYREJECTED: modified content or bad signature
    MALFORMED = "malformed"  # EBADMSG (or another parse errno)
    UNSUPPORTED = "unsupported"  # ENOPKG
    ERROR = "error"  # the file could not be read or decompressed

    def __str__(self) -> str:
        return self.value


_STATUS_OF_ERRNO = {
    0: Status.VALID, errno.ENODATA: Status.UNSIGNED, errno.ENOKEY: Status.UNKNOWN_KEY,
    errno.EKEYREJECTED: Status.REJECTED, errno.ENOPKG: Status.UNSUPPORTED,
}


@dataclass(frozen=True)
class Verdict:
    """The kernel's view of one module's signature."""

    status: Status
    errno: int  # what mod_verify_sig returns (ENODATA for unsigned, 0 when valid)
    reason: str  # the kernel's log line, or what is wrong
    signer: str | None = None  # the key's subject CN (valid) or the issuer CN named
    key_id: bytes | None = None  # serial number or SKID named by the signature
    hash_algo: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.VALID

    @property
    def errno_name(self) -> str:
        return errno.errorcode.get(self.errno, "") if self.errno else ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "errno": self.errno_name or None,
                "reason": self.reason, "signer": self.signer,
                "key_id": self.key_id.hex() if self.key_id is not None else None,
                "hash_algo": self.hash_algo}


def _verdict(err: int, reason: str, **kw: Any) -> Verdict:
    return Verdict(_STATUS_OF_ERRNO.get(err, Status.MALFORMED), err, reason, **kw)


@dataclass
class VerifyStats:
    """Time spent per phase (seconds), for the benchmark."""

    read: float = 0.0
    parse: float = 0.0
    hash: float = 0.0
    pubkey: float = 0.0
    count: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def merge(self, other: VerifyStats) -> None:
        self.read += other.read
        self.parse += other.parse
        self.hash += other.hash
        self.pubkey += other.pubkey
        self.count += other.count
        for k, v in other.by_status.items():
            self.by_status[k] = self.by_status.get(k, 0) + v


@dataclass
class _SignerInfo:
    by_skid: bool
    ident: bytes  # serial‖issuer or SKID
    key_id: bytes  # serial magnitude (as kmod prints it) or SKID
    issuer: bytes | None  # DER of the issuer Name
    digest_oid: str
    sig_oid: str
    signature: bytes

    @property
    def issuer_cn(self) -> str | None:
        if self.issuer is None:
            return None
        from asn1crypto import x509

        from lkm.signature import _issuer_cn

        try:
            return _issuer_cn(x509.Name.load(self.issuer))
        except Exception:
            return None


class SigCheck(NamedTuple):
    """What mod_verify_sig's checks of the struct module_signature found."""

    errno: int  # 0 when the trailer is usable
    reason: str
    body: int  # length of the module without its signature
    logged: bool  # the kernel prints ``reason`` (mod_check_sig's pr_err)


def mod_check_sig(content: bytes | memoryview | mmap.mmap, modlen: int) -> SigCheck:
    """The kernel's checks of the struct module_signature that ends at ``modlen`` (the
    module with its MAGIC cut off), in mod_verify_sig's and mod_check_sig's order."""
    if modlen <= MODULE_SIGNATURE_SIZE:
        return SigCheck(errno.EBADMSG, "signature trailer truncated", modlen, False)
    algo, hash_, id_type, signer_len, key_id_len, p0, p1, p2, sig_len = struct.unpack_from(
        ">BBBBBBBBI", content, modlen - MODULE_SIGNATURE_SIZE)
    if sig_len >= modlen - MODULE_SIGNATURE_SIZE:
        return SigCheck(errno.EBADMSG, f"sig_len {sig_len} exceeds the module", modlen, False)
    if id_type != PKEY_ID_PKCS7:
        return SigCheck(errno.ENOPKG, "module: not signed with expected PKCS#7 message",
                        modlen, True)
    if algo or hash_ or signer_len or key_id_len or p0 or p1 or p2:
        return SigCheck(errno.EBADMSG,
                        "module: PKCS#7 signature info has unexpected non-zero params",
                        modlen, True)
    return SigCheck(0, "", modlen - MODULE_SIGNATURE_SIZE - sig_len, False)


def verify_module(content: bytes | memoryview | mmap.mmap, keyring: Keyring,
                  stats: VerifyStats | None = None) -> Verdict:
    """Check a decompressed module's signature the way the kernel's module_sig_check does."""
    n = len(content)
    if n <= len(MAGIC) or bytes(content[n - len(MAGIC):]) != MAGIC:
        return _verdict(errno.ENODATA, "unsigned module")
    modlen = n - len(MAGIC)
    check = mod_check_sig(content, modlen)
    if check.errno:
        return _verdict(check.errno, check.reason)
    body = check.body
    raw = bytes(content[body:modlen - MODULE_SIGNATURE_SIZE])
    t0 = time.perf_counter()
    try:
        parsed = _parse_pkcs7_fast(raw)
        if parsed is None:
            parsed = _parse_pkcs7(raw)
        sinfos, data_present, have_authattrs, content_type = parsed
    except _Reject as r:
        return _verdict(r.err, r.reason)
    finally:
        if stats is not None:
            stats.parse += time.perf_counter() - t0
    first = sinfos[0]
    h = _HASH_BY_OID.get(first.digest_oid)
    info: dict[str, Any] = {
        "key_id": first.key_id, "signer": None,
        "hash_algo": h.name if h else _KNOWN_UNSUPPORTED_DIGESTS.get(first.digest_oid)}
    if data_present:
        return _verdict(errno.EINVAL, "Data already supplied", **info)
    if content_type != _OID_DATA:
        return _verdict(errno.EKEYREJECTED, "Invalid module sig (not pkcs7-data)", **info)
    if have_authattrs:
        return _verdict(errno.EKEYREJECTED, "Invalid module sig (has authattrs)", **info)
    # pkcs7_verify: a SignerInfo whose digest cannot be computed is "unsupported crypto";
    # all of them so → ENOPKG.  pkcs7_validate_trust: the first hard failure wins, else
    # any success, else ENOPKG over ENOKEY.
    usable = [(si, _usable_hash(si, keyring)) for si in sinfos]
    if all(hh is None for _si, hh in usable):
        return _verdict(errno.ENOPKG, f"unsupported digest {info['hash_algo'] or first.digest_oid}",
                        **info)
    result: Verdict | None = None
    digests: dict[str, bytes] = {}
    for si, hh in usable:
        if hh is None:
            if result is None:
                result = _verdict(errno.ENOPKG, "module with unsupported crypto", **info)
            continue
        key = keyring.find("skid" if si.by_skid else "id", si.ident)
        if key is None:
            continue
        found = {"key_id": si.key_id, "signer": key.subject, "hash_algo": hh.name}
        t1 = time.perf_counter()
        digest = digests.get(hh.name)
        if digest is None:
            digest = digests[hh.name] = hashlib.new(hh.hashlib_name,
                                                    memoryview(content)[:body]).digest()
        t2 = time.perf_counter()
        ok, why = _check_signature(key, si, hh, digest)
        if stats is not None:
            stats.hash += t2 - t1
            stats.pubkey += time.perf_counter() - t2
        if not ok:
            return _verdict(errno.EKEYREJECTED, why, **found)
        result = _verdict(0, "signature valid", **found)
    if result is None:
        info["signer"] = first.issuer_cn
        return _verdict(errno.ENOKEY, "module with unavailable key", **info)
    return result


def _usable_hash(si: _SignerInfo, keyring: Keyring) -> HashAlgo | None:
    h = _HASH_BY_OID.get(si.digest_oid)
    if h is None or (keyring.digests is not None and h.name not in keyring.digests):
        return None
    return h


class _Reject(Exception):
    def __init__(self, err: int, reason: str) -> None:
        super().__init__(reason)
        self.err = err
        self.reason = reason


def _oid_der(dotted: str) -> bytes:
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


_FAST_OIDS = {_oid_der(o): o for o in (
    _OID_SIGNED_DATA, _OID_DATA, _OID_RSA, *_ECDSA_SIG_OIDS, *_HASH_BY_OID)}


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``; ValueError if
    it is not a definite-length element within ``end``."""
    if pos + 2 > end:
        raise ValueError
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or pos + k > end:
            raise ValueError
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if pos + n > end:
        raise ValueError
    return tag, pos, pos + n


def _parse_pkcs7_fast(raw: bytes) -> tuple[list[_SignerInfo], bool, bool, str] | None:
    """The common shape (DER, one SignerInfo, OIDs we know) read without asn1crypto;
    None for anything else, which _parse_pkcs7 then classifies."""
    if len(raw) > 65535:
        return None
    try:
        t, p, end = _tlv(raw, 0, len(raw))  # ContentInfo
        if t != 0x30:
            return None
        t, a, b = _tlv(raw, p, end)
        if t != 0x06 or _FAST_OIDS.get(raw[a:b]) != _OID_SIGNED_DATA:
            return None
        t, p, end = _tlv(raw, b, end)
        if t != 0xA0:
            return None
        t, p, end = _tlv(raw, p, end)  # SignedData
        if t != 0x30:
            return None
        t, a, b = _tlv(raw, p, end)
        if t != 0x02 or b - a != 1 or raw[a] not in (1, 3):
            return None
        version = raw[a]
        t, a, p = _tlv(raw, b, end)  # digestAlgorithms
        if t != 0x31:
            return None
        t, a, p = _tlv(raw, p, end)  # encapContentInfo
        if t != 0x30:
            return None
        t, oa, ob = _tlv(raw, a, p)
        if t != 0x06 or _FAST_OIDS.get(raw[oa:ob]) != _OID_DATA or ob != p:
            return None  # attached content or another type
        t, a, b = _tlv(raw, p, end)
        while t in (0xA0, 0xA1):  # certificates, crls
            t, a, b = _tlv(raw, b, end)
        if t != 0x31:
            return None
        t, p, se = _tlv(raw, a, b)  # the SignerInfo
        if t != 0x30 or se != b:
            return None  # more than one
        t, a, p = _tlv(raw, p, se)
        if t != 0x02 or p - a != 1 or raw[a] != version:
            return None
        t, a, q = _tlv(raw, p, se)
        if version == 1:
            if t != 0x30:
                return None
            t2, _na, nb = _tlv(raw, a, q)  # the issuer Name, header included
            if t2 != 0x30:
                return None
            issuer = raw[a:nb]
            t2, sa, sb = _tlv(raw, nb, q)
            if t2 != 0x02 or sb != q or sb == sa:
                return None
            serial = raw[sa:sb]
            mag = serial.lstrip(b"\0") if serial[0] < 0x80 else None
            if mag is None:
                return None  # negative serial: leave it to the slow path
            si_ident, key_id, by_skid = serial + issuer, mag, False
        else:
            if t != 0x80:
                return None
            skid = raw[a:q]
            si_ident, key_id, by_skid, issuer = skid, skid, True, None
        t, a, p = _tlv(raw, q, se)  # digestAlgorithm
        if t != 0x30:
            return None
        t, oa, ob = _tlv(raw, a, p)
        digest_oid = _FAST_OIDS.get(raw[oa:ob]) if t == 0x06 else None
        if digest_oid not in _HASH_BY_OID:
            return None
        t, a, b = _tlv(raw, p, se)
        if t == 0xA0:  # authenticated attributes
            return None
        if t != 0x30:
            return None
        t, oa, ob = _tlv(raw, a, b)
        sig_oid = _FAST_OIDS.get(raw[oa:ob]) if t == 0x06 else None
        if sig_oid is None or sig_oid in _HASH_BY_OID or sig_oid == _OID_DATA:
            return None
        t, a, c = _tlv(raw, b, se)
        if t != 0x04:
            return None
        if c != se:
            t, _x, _y = _tlv(raw, c, se)
            if t != 0xA1:
                return None
    except (ValueError, IndexError):
        return None
    assert digest_oid is not None
    si = _SignerInfo(by_skid, si_ident, key_id, issuer, digest_oid, sig_oid, raw[a:c])
    return [si], False, False, _OID_DATA


def _parse_pkcs7(raw: bytes) -> tuple[list[_SignerInfo], bool, bool, str]:
    """The SignerInfos, whether content is attached, whether signed attributes are
    present, and the content type — or _Reject with the kernel's errno."""
    from asn1crypto import cms

    if len(raw) > 65535:
        raise _Reject(errno.EMSGSIZE, "PKCS#7 message larger than the ASN.1 decoder accepts")
    try:
        ci = cms.ContentInfo.load(raw)
        if ci["content_type"].dotted != _OID_SIGNED_DATA:
            raise _Reject(errno.EINVAL, "Only support pkcs7_signedData type")
        sd = ci["content"]
        version = sd["version"].native
        if version not in ("v1", "v3"):
            raise _Reject(errno.EINVAL, "Unsupported SignedData version")
        eci = sd["encap_content_info"]
        content_type = eci["content_type"].dotted
        if content_type not in (_OID_DATA, "1.3.6.1.4.1.311.2.1.4"):
            raise _Reject(errno.EINVAL, f"Unsupported data type {content_type}")
        data_present = eci["content"].contents is not None and bool(eci["content"].contents)
        infos = sd["signer_infos"]
        if len(infos) == 0:
            raise _Reject(errno.EBADMSG, "PKCS#7 message has no SignerInfo")
        parsed: list[_SignerInfo] = []
        authattrs = []
        for si in infos:
            sv = si["version"].native
            if sv == "v1":
                if version != "v1":
                    raise _Reject(errno.EBADMSG, "SignedData-SignerInfo version mismatch")
            elif sv == "v3":
                if version == "v1":
                    raise _Reject(errno.EBADMSG, "SignedData-SignerInfo version mismatch")
            else:
                raise _Reject(errno.EINVAL, "Unsupported SignerInfo version")
            digest_oid = si["digest_algorithm"]["algorithm"].dotted
            if digest_oid not in _HASH_BY_OID and digest_oid not in _KNOWN_UNSUPPORTED_DIGESTS:
                raise _Reject(errno.ENOPKG, f"Unsupported digest algo: {digest_oid}")
            sig_oid = si["signature_algorithm"]["algorithm"].dotted
            if sig_oid != _OID_RSA and sig_oid not in _ECDSA_SIG_OIDS:
                raise _Reject(errno.ENOPKG, f"Unsupported pkey algo: {sig_oid}")
            sid = si["sid"]
            if sv == "v3":
                if sid.name != "subject_key_identifier":
                    raise _Reject(errno.EBADMSG, "SignerInfo v3 without subjectKeyIdentifier")
                skid = bytes(sid.chosen.contents or b"")
                parsed.append(_SignerInfo(True, skid, skid, None, digest_oid, sig_oid,
                                          bytes(si["signature"].contents or b"")))
            else:
                if sid.name != "issuer_and_serial_number":
                    raise _Reject(errno.EBADMSG, "SignerInfo v1 without issuer and serial")
                ias = sid.chosen
                serial = ias["serial_number"]
                serial_bytes = bytes(serial.contents or b"")
                issuer = ias["issuer"].dump()
                n = abs(int(serial.native))
                parsed.append(_SignerInfo(
                    False, serial_bytes + issuer, n.to_bytes((n.bit_length() + 7) // 8, "big"),
                    issuer, digest_oid, sig_oid, bytes(si["signature"].contents or b"")))
            authattrs.append(bool(si["signed_attrs"].contents))
    except _Reject:
        raise
    except Exception as e:  # asn1crypto: ValueError, TypeError, KeyError... on bad BER
        raise _Reject(errno.EBADMSG, f"malformed PKCS#7 message: {e}") from None
    if any(authattrs) and not all(authattrs):
        raise _Reject(errno.EINVAL, "Inconsistently supplied authAttrs")
    return parsed, data_present, authattrs[0], content_type


def _check_signature(key: Key, si: _SignerInfo, h: HashAlgo, digest: bytes) -> tuple[bool, str]:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    pre = utils.Prehashed(_crypto_hash(h))
    pub = key.public_key
    try:
        if si.sig_oid == _OID_RSA:
            if not isinstance(pub, rsa.RSAPublicKey):
                return False, "signature algorithm does not match the key"
            pub.verify(si.signature, digest, padding.PKCS1v15(), pre)
        else:
            if not isinstance(pub, ec.EllipticCurvePublicKey):
                return False, "signature algorithm does not match the key"
            pub.verify(si.signature, digest, ec.ECDSA(pre))
    except InvalidSignature:
        return False, "Key was rejected by service"
    except (UnsupportedAlgorithm, ValueError) as e:
        return False, f"Key was rejected by service ({e})"
    return True, ""


def verify_file(path: str | os.PathLike[str], keyring: Keyring,
                stats: VerifyStats | None = None) -> Verdict:
    """verify_module on a file, compressed or not; never raises for bad content."""
    from lkm.compress import read_module
    from lkm.errors import CompressionError

    t0 = time.perf_counter()
    try:
        content, _kind = read_module(path)
    except OSError as e:
        v = Verdict(Status.ERROR, e.errno or errno.EIO, e.strerror or str(e))
    except CompressionError as e:
        v = Verdict(Status.ERROR, errno.EINVAL, str(e))
    else:
        if stats is not None:
            stats.read += time.perf_counter() - t0
        try:
            v = verify_module(content, keyring, stats)
        finally:
            close = getattr(content, "close", None)
            if close is not None:
                close()
    if stats is not None:
        stats.count += 1
        stats.by_status[v.status.value] = stats.by_status.get(v.status.value, 0) + 1
    return v


def module_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files given, with directories expanded to their modules (sorted)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*")
                              if f.name.endswith(MODULE_SUFFIXES) and f.is_file()))
        else:
            out.append(p)
    return out


_worker_ring: Keyring | None = None


def _init_worker(ders: list[bytes], digests: frozenset[str] | None) -> None:
    global _worker_ring
    _worker_ring = Keyring(ders, digests)


def _work(path: str) -> tuple[Verdict, VerifyStats]:
    assert _worker_ring is not None
    st = VerifyStats()
    return verify_file(path, _worker_ring, st), st


def verify_files(files: Sequence[str | os.PathLike[str]], keyring: Keyring,
                 jobs: int | None = None, stats: VerifyStats | None = None
                 ) -> Iterator[tuple[Path, Verdict]]:
    """verify_file over many files, in order; ``jobs`` processes (default: CPUs, 1 for few)."""
    paths = [Path(f) for f in files]
    if jobs is None:
        jobs = (os.cpu_count() or 1) if len(paths) >= 64 else 1
    if jobs <= 1:
        for p in paths:
            yield p, verify_file(p, keyring, stats)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(keyring.ders, keyring.digests)) as pool:
        chunk = max(1, min(64, len(paths) // (jobs * 8)))
        for p, (v, st) in zip(paths, pool.imap(_work, [str(p) for p in paths], chunk),
                              strict=True):
            if stats is not None:
                stats.merge(st)
            yield p, v


__all__ = [
    "HASHES", "Key", "Keyring", "SignatureError", "SigningError", "Status", "Verdict",
    "VerifyStats", "append_signature", "build_pkcs7", "hash_algo", "load_certificate",
    "load_private_key", "module_files", "read_certificates", "sign_module", "signature_trailer",
    "strip_signature", "verify_file", "verify_files", "verify_module", "write_atomic",
]


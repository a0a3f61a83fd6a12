"""Checking a module's signature by the kernel's rules.

The sequence is the kernel's: mod_verify_sig (kernel/module/signing.c) checks the
struct module_signature with mod_check_sig (kernel/module_signature.c), then
verify_pkcs7_signature (certs/system_keyring.c) parses the message
(crypto/asymmetric_keys/pkcs7_parser.c, read here by :mod:`lkm.pkcs7` in its
KERNEL dialect), supplies the detached data, and pkcs7_verify / pkcs7_validate_trust
(pkcs7_verify.c, pkcs7_trust.c) check every SignerInfo against the keyring.  The
result is a :class:`Verdict` carrying the errno mod_verify_sig would return.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import mmap
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lkm import pkcs7
from lkm.compress import read_module
from lkm.errors import FormatError
from lkm.signature import MAGIC, MODULE_SIGNATURE_SIZE, PKEY_ID_PKCS7
from lkm.signing.algorithms import (
    HASH_BY_OID,
    KERNEL_DIGEST_OIDS,
    OID_RSA,
    PKEY_OIDS,
    HashAlgo,
    crypto_hash,
)
from lkm.signing.keyring import Key, Keyring

Content = bytes | memoryview | mmap.mmap


class Status(enum.Enum):
    """What a module's signature amounts to."""

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


class SigCheck(NamedTuple):
    """What mod_verify_sig's checks of the struct module_signature found."""

    errno: int  # 0 when the trailer is usable
    reason: str
    body: int  # length of the module without its signature
    logged: bool  # the kernel prints ``reason`` (mod_check_sig's pr_err)


def mod_check_sig(content: Content, modlen: int) -> SigCheck:
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


class _KernelParser(pkcs7.Actions):
    """The checks pkcs7_parser.c's actions make while the message is decoded."""

    def __init__(self) -> None:
        self.version: int | None = None

    def signeddata_version(self, version: bytes) -> None:
        if len(version) != 1 or version[0] not in (1, 3):
            raise pkcs7.Pkcs7Error("Unsupported SignedData version", errno.EINVAL)
        self.version = version[0]

    def data_type(self, oid: bytes) -> None:
        if oid not in (pkcs7.OID_DATA, pkcs7.OID_MS_INDIRECT_DATA):
            raise pkcs7.Pkcs7Error(f"Unsupported data type {pkcs7.oid_dotted(oid)}",
                                   errno.EINVAL)

    def signerinfo_version(self, version: bytes) -> None:
        if len(version) != 1 or version[0] not in (1, 3):
            raise pkcs7.Pkcs7Error("Unsupported SignerInfo version", errno.EINVAL)
        if (version[0] == 1) != (self.version == 1):
            raise pkcs7.Pkcs7Error("SignedData-SignerInfo version mismatch")

    def digest_algo(self, oid: bytes) -> None:
        if oid not in KERNEL_DIGEST_OIDS:
            raise pkcs7.Pkcs7Error(f"Unsupported digest algo: {pkcs7.oid_dotted(oid)}",
                                   errno.ENOPKG)

    def pkey_algo(self, oid: bytes) -> None:
        if oid not in PKEY_OIDS:
            raise pkcs7.Pkcs7Error(f"Unsupported pkey algo: {pkcs7.oid_dotted(oid)}",
                                   errno.ENOPKG)


def parse_kernel_pkcs7(raw: bytes) -> pkcs7.SignedData:
    """pkcs7_parse_message: the message as the kernel reads it, with its checks of the
    values and of authenticatedAttributes (pkcs7_check_authattrs); Pkcs7Error else."""
    sd = pkcs7.parse_signed_data(raw, pkcs7.KERNEL, _KernelParser())
    infos = sd.signer_infos
    if not infos or any(si.authattrs != infos[0].authattrs for si in infos):
        raise pkcs7.Pkcs7Error("Inconsistently supplied authAttrs", errno.EINVAL)
    return sd


def verify_module(content: Content, keyring: Keyring, stats: VerifyStats | None = None
                  ) -> Verdict:
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
        sd = parse_kernel_pkcs7(raw)
    except pkcs7.Asn1Error as e:
        return _verdict(e.errno, f"malformed PKCS#7 message: {e.reason}")
    except pkcs7.Pkcs7Error as e:
        return _verdict(e.errno, e.reason)
    finally:
        if stats is not None:
            stats.parse += time.perf_counter() - t0
    sinfos = sd.signer_infos
    first = sinfos[0]
    first_id = _key_id(first)
    info: dict[str, Any] = {"key_id": first_id, "signer": None,
                            "hash_algo": pkcs7.DIGEST_OIDS.get(first.digest_algo)}
    # pkcs7_supply_detached_data, then pkcs7_verify's VERIFYING_MODULE_SIGNATURE checks
    if sd.data_attached:
        return _verdict(errno.EINVAL, "Data already supplied", **info)
    if sd.data_type != pkcs7.OID_DATA:
        return _verdict(errno.EKEYREJECTED, "Invalid module sig (not pkcs7-data)", **info)
    if first.authattrs:
        return _verdict(errno.EKEYREJECTED, "Invalid module sig (has authattrs)", **info)
    # pkcs7_verify: a SignerInfo whose digest cannot be computed is "unsupported crypto";
    # all of them so -> ENOPKG.  pkcs7_validate_trust: the first hard failure wins, else
    # any success, else ENOPKG over ENOKEY.
    usable = [(si, _usable_hash(si, keyring)) for si in sinfos]
    if all(hh is None for _si, hh in usable):
        name = info["hash_algo"] or pkcs7.oid_dotted(first.digest_algo)
        return _verdict(errno.ENOPKG, f"unsupported digest {name}", **info)
    result: Verdict | None = None
    digests: dict[str, bytes] = {}
    for si, hh in usable:
        if hh is None:
            if result is None:
                result = _verdict(errno.ENOPKG, "module with unsupported crypto", **info)
            continue
        # pkcs7_note_signed_info: the key id follows the SignerInfo version
        if si.version == b"\x03":
            key = keyring.find("skid", si.skid or b"")
        else:
            key = keyring.find("id", (si.serial or b"") + (si.issuer or b""))
        if key is None:
            continue
        found = {"key_id": first_id if si is first else _key_id(si), "signer": key.subject,
                 "hash_algo": hh.name}
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
        info["signer"] = pkcs7.common_name(first.issuer) if first.issuer is not None else None
        return _verdict(errno.ENOKEY, "module with unavailable key", **info)
    return result


def _key_id(si: pkcs7.SignerInfo) -> bytes:
    """The id a SignerInfo names its key by, as kmod and the tools print it."""
    return si.skid if si.skid is not None else si.serial_magnitude


def _usable_hash(si: pkcs7.SignerInfo, keyring: Keyring) -> HashAlgo | None:
    h = HASH_BY_OID.get(si.digest_algo)
    if h is None or (keyring.digests is not None and h.name not in keyring.digests):
        return None
    return h


def _check_signature(key: Key, si: pkcs7.SignerInfo, h: HashAlgo, digest: bytes
                     ) -> tuple[bool, str]:
    """public_key_verify of ``digest`` with the key: (valid, the kernel's message)."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    pre = utils.Prehashed(crypto_hash(h))
    pub = key.public_key
    try:
        if si.pkey_algo == OID_RSA:
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
    """verify_module on a file, compressed or not; never raises for bad content (an
    unreadable, undecompressable or oversized file is an ERROR verdict)."""
    t0 = time.perf_counter()
    try:
        content, _kind = read_module(path)
    except OSError as e:
        v = Verdict(Status.ERROR, e.errno or errno.EIO, e.strerror or str(e))
    except FormatError as e:  # CompressionError, or larger than a module may be
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

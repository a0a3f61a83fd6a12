"""Module signing and verification, as scripts/sign-file writes and the kernel checks.

One file per question:

- :mod:`~lkm.signing.algorithms`: hash and public-key algorithms, what a kernel has built in
- :mod:`~lkm.signing.keys`: private keys and certificates from files
- :mod:`~lkm.signing.keyring`: the trusted keys (:class:`Keyring`)
- :mod:`~lkm.signing.sign`: signing as sign-file does, stripping signatures
- :mod:`~lkm.signing.verify`: the kernel's checks (:func:`mod_check_sig`, :func:`verify_module`)
- :mod:`~lkm.signing.pool`: verifying the modules of a tree in several processes

The PKCS#7 bytes themselves are read and written by :mod:`lkm.pkcs7`; the
trailer as kmod's modinfo reads it by :mod:`lkm.signature`.
"""

from __future__ import annotations

from lkm.errors import SignatureError
from lkm.signing.algorithms import HASHES, HashAlgo, SigningError, builtin_digests, hash_algo
from lkm.signing.keyring import Key, Keyring
from lkm.signing.keys import load_certificate, load_private_key, read_certificates
from lkm.signing.pool import MODULE_SUFFIXES, module_files, verify_files
from lkm.signing.sign import (
    append_signature,
    build_pkcs7,
    read_module_bytes,
    sign_module,
    signature_trailer,
    strip_signature,
    write_module_bytes,
)
from lkm.signing.verify import (
    SigCheck,
    Status,
    Verdict,
    VerifyStats,
    mod_check_sig,
    verify_file,
    verify_module,
)

__all__ = [
    "HASHES", "MODULE_SUFFIXES", "HashAlgo", "Key", "Keyring", "SigCheck", "SignatureError",
    "SigningError", "Status", "Verdict", "VerifyStats", "append_signature", "build_pkcs7",
    "builtin_digests", "hash_algo", "load_certificate", "load_private_key", "mod_check_sig",
    "module_files", "read_certificates", "read_module_bytes", "sign_module",
    "signature_trailer", "strip_signature", "verify_file", "verify_files", "verify_module",
    "write_module_bytes",
]

"""The signature check at load (kernel/module/signing.c module_sig_check(),
mod_verify_sig()).

The appended signature is parsed by :func:`lkm.signing.mod_check_sig` and verified by
:func:`lkm.signing.verify_module` against the profile's built-in keys.  An unsigned
module, or one signed with unsupported crypto or an unknown key, loads (tainting E
later) unless sig_enforce rejects it or lockdown restricts it; any other failure
(a bad or tampered signature) is fatal.  From here on the loader works on the image
without its signature.
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.module.internal import LoadError, LoadInfo
from lkm.kernel.module.state import KernelState
from lkm.kernel.printk import Printk
from lkm.kernel.profile import KernelProfile
from lkm.kernel.uapi import MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC
from lkm.signature import MAGIC as MODULE_SIG_STRING

_REASONS = {errno.ENODATA: "unsigned module", errno.ENOPKG: "module with unsupported crypto",
            errno.ENOKEY: "module with unavailable key"}

_keyrings: dict[int, Any] = {}


def _keyring(p: KernelProfile) -> Any:
    """The built-in trusted keys of the profile (parsed once per profile)."""
    from lkm.signing import Keyring

    key = id(p)
    if key not in _keyrings:
        _keyrings.clear()
        _keyrings[key] = Keyring(p.certificates)
    return _keyrings[key]


def module_sig_check(k: KernelState, info: LoadInfo, flags: int, comm: str,
                     log: Printk) -> None:
    """module_sig_check(): sets ``info.sig_ok`` or raises LoadError."""
    if not k.profile.enabled("MODULE_SIG"):
        return
    err = errno.ENODATA
    mangled = flags & (MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC)
    if not mangled and info.len > len(MODULE_SIG_STRING) \
            and info.data.endswith(MODULE_SIG_STRING):
        err = mod_verify_sig(k, info, log)
        if err == 0:
            info.sig_ok = True
            return
    reason = _REASONS.get(err)
    if reason is None:
        raise LoadError(err)
    if k.sig_enforce:
        log.notice(f"Loading of {reason} is rejected")
        raise LoadError(errno.EKEYREJECTED)
    if k.lockdown and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        log.notice(f"Lockdown: {comm}: unsigned module loading is restricted; "
                   "see man kernel_lockdown.7")
        raise LoadError(errno.EPERM)


def mod_verify_sig(k: KernelState, info: LoadInfo, log: Printk) -> int:
    """mod_verify_sig(): 0 or the errno; strips the signature from ``info``."""
    from lkm.signing import mod_check_sig, verify_module

    check = mod_check_sig(info.data, info.len - len(MODULE_SIG_STRING))
    if check.errno:
        if check.logged:
            log.err(check.reason)
        return check.errno
    body = check.body
    verdict = verify_module(info.data, _keyring(k.profile))
    info.data = info.data[:body]
    info.len = body
    e = verdict.errno
    if e == errno.EINVAL and verdict.reason == "Data already supplied":
        log.warn("PKCS7: Data already supplied")
        log.err("PKCS#7 signature with non-detached data")
        return errno.EBADMSG
    if e == errno.EKEYREJECTED and verdict.reason.startswith("Invalid module sig"):
        log.warn(f"PKCS7: {verdict.reason}")
    return e

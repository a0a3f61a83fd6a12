"""What loading a module would do to a kernel: lkm check's verdict, its taints and why,
and the signature's state against the kernel's keys.

The verdict is lkm check's (lkm.kernel.check.Checker): the module is loaded, after the
dependencies the tree names, into a virtual kernel of the profile.  Auditing many modules
reuses one kernel per process, as a machine that loads them one after another would: a
module already loaded as another's dependency keeps the result of that load.  A load that
fails in a kernel that already holds modules is redone in a fresh one, so that its verdict
and taints never depend on what was audited before it (a duplicate export, a taint already
set).

Why each taint (kernel/module/main.c check_modinfo, module_augment_kernel_taints,
kernel/module/signing.c): the licence (license_is_gpl_compatible), no ``intree=Y``,
``staging=Y``, ``livepatch=Y``, ``test=Y``, and for E the signature verdict of
lkm.signing (kernel/module/signing.c mod_verify_sig).
"""

from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING, Any

from lkm.audit.findings import Evidence, Finding, LoadVerdict, SignatureState, finding, taint_id
from lkm.kernel import taint as T

if TYPE_CHECKING:
    from lkm.kernel.check import Checker, CheckResult
    from lkm.kernel.profile import KernelProfile
    from lkm.module import ModuleFile
    from lkm.signing import Keyring


# modules a shared kernel holds before a new one is started: the loader looks modules up
# in a list, so a kernel holding thousands makes every load slower
SHARED_LIMIT = 256


class VerdictMaker:
    """Load verdicts and signature states against one kernel profile."""

    def __init__(self, profile: KernelProfile, moddir: Any = None) -> None:
        self.profile = profile
        self.moddir = moddir  # a module directory path, or a callable making one
        self._checker: Checker | None = None
        self._results: dict[str, CheckResult] = {}  # every module the shared kernel loaded
        self._keyring: Keyring | None = None

    # -- lkm check -----------------------------------------------------------------------
    def _fresh(self) -> Checker:
        from lkm.kernel.check import Checker

        return Checker(self.profile, moddir=self._moddir())

    def _moddir(self) -> Any:
        if callable(self.moddir):
            self.moddir = self.moddir()
        return self.moddir

    def load(self, path: str, name: str) -> CheckResult:
        """lkm check's result for the module file ``path`` named ``name``."""
        if self._checker is None or len(self._checker.k.modules) >= SHARED_LIMIT:
            self._checker = self._fresh()
            self._results.clear()
        got = self._results.get(name)
        if got is not None and got.path and _same_file(got.path, path):
            return got
        shared = self._checker
        used = bool(shared.k.modules)
        results = shared.run([self._argument(shared, path, name)])
        for r in results:
            if r.loaded:
                self._results.setdefault(r.module, r)
        top = results[-1]
        if not top.loaded and used:
            fresh = self._fresh()
            top = fresh.run([self._argument(fresh, path, name)])[-1]
        return top

    @staticmethod
    def _argument(checker: Checker, path: str, name: str) -> str:
        """The module's name when it is the tree's module of that name (its dependencies
        then come from modules.dep), else its path (from modules.symbols)."""
        md = checker.moddir()
        if md is None:
            return path
        entry = md.lookup_name(name)
        if entry is not None and entry.path and _same_file(entry.path, path):
            return name
        return path

    def verdict(self, path: str, name: str) -> tuple[LoadVerdict, int]:
        """The verdict and the mask of the taints the load sets."""
        r = self.load(path, name)
        code = _errno.errorcode.get(r.errno, str(r.errno)) if r.errno is not None else None
        return LoadVerdict(r.loaded, code, r.taint, list(r.messages)), T.from_letters(r.taint)

    # -- signatures ----------------------------------------------------------------------
    def signature(self, mod: ModuleFile) -> SignatureState:
        """lkm.signing's verdict on the module's signature with the kernel's certificates."""
        from lkm.signing import Keyring, verify_module

        if self._keyring is None:
            self._keyring = Keyring(self.profile.certificates)
        content = mod.content
        v = verify_module(bytes(content) if isinstance(content, bytearray) else content,
                          self._keyring)
        return SignatureState(v.status.value, v.reason, v.signer,
                              keys_known=bool(self.profile.certificates))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def taint_findings(mod: ModuleFile, verdict: LoadVerdict, mask: int,
                   signature: SignatureState | None, forced: bool = False) -> list[Finding]:
    """A finding per taint the load sets, with the reason the module gives for it."""
    out = []
    for bit in range(len(T.TAINT_FLAG_TABLE)):
        if mask >> bit & 1:
            out.append(finding(taint_id(bit), *_why(bit, mod, signature, forced)))
    if not verdict.loaded:
        out.append(finding("load.refused", *(Evidence(m) for m in verdict.messages[-8:]),
                           detail=f"{verdict.errno} ({_strerror(verdict.errno)})"))
    if signature is not None and signature.status in ("rejected", "malformed"):
        out.append(finding("signature.invalid", Evidence(signature.reason)))
    return out


def _strerror(code: str | None) -> str:
    number = getattr(_errno, code or "", None)
    return os.strerror(number) if isinstance(number, int) else "unknown error"


def _why(bit: int, mod: ModuleFile, sig: SignatureState | None, forced: bool) -> list[Evidence]:
    if bit == T.TAINT_PROPRIETARY_MODULE:
        lic = mod.license
        return [Evidence(f"license '{lic}' is not GPL-compatible" if lic is not None
                         else "no license: the kernel assumes a proprietary one")]
    if bit == T.TAINT_OOT_MODULE:
        return [Evidence("no intree=Y in .modinfo: built outside the kernel tree")]
    if bit == T.TAINT_CRAP:
        return [Evidence("staging=Y in .modinfo: a drivers/staging module")]
    if bit == T.TAINT_LIVEPATCH:
        return [Evidence("livepatch=Y in .modinfo: a live patch")]
    if bit == T.TAINT_TEST:
        return [Evidence("test=Y in .modinfo: a test module")]
    if bit == T.TAINT_UNSIGNED_MODULE and sig is not None:
        signer = f" (signer {sig.signer})" if sig.signer else ""
        return [Evidence(f"signature: {sig.status}: {sig.reason}{signer}")]
    if bit == T.TAINT_FORCED_MODULE and forced:
        return [Evidence("loaded with version checks ignored (--force)")]
    return []

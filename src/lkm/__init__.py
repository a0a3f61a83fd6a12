"""lkm: the Linux loadable-kernel-module system in Python.

kmod-compatible tools (modinfo, depmod, modprobe, insmod, rmmod, lsmod), module
signing and verification, a virtual kernel reproducing ``kernel/module/`` that runs
the module's own code, the real kernel under QEMU, and audit tools.  The command-line
tools are thin layers over this library; the names below are its entry points.

Reading modules and module directories:

- :class:`ModuleFile` -- one ``.ko`` (``.ko.xz``/``.ko.zst``/``.ko.gz`` too): modinfo,
  parameters, ``__versions``, exports, imports, signature.
- :class:`ModuleDir` -- ``/lib/modules/<release>`` and depmod's indexes.
- :class:`KmodContext`, :class:`KmodModule` -- libkmod's context and module handle: the
  lookup order (aliases, modules.dep, symbols, builtin), dependencies, initstate.
- :func:`run_depmod` -- kmod's depmod over a module directory (:func:`lkm.depmod.run`).

Signing: :func:`sign_module`, :func:`strip_signature`, :func:`verify_module`,
:func:`verify_file`, :class:`Keyring`; kernel images: :class:`KernelImage`, struct
layouts from a kernel's BTF: :class:`Btf`.

Kernels: :class:`KernelProfile` and :func:`load_profile` (what a Debian tree's kernel
offers), :class:`VirtualKernel` (a kernel kept in a directory, running module code),
:class:`LiveKernel` (the running kernel's syscalls), :class:`Checker` (``lkm check``),
:func:`run_in_vm` and :func:`find_kernel` (``lkm vm``: the tree's real kernel under
QEMU), :func:`audit_files` (``lkm audit``).

Errors are :class:`LkmError` and its subclasses (:class:`KernelError` carries the
kernel's errno and log lines).

Names are imported when first used, so ``import lkm`` costs nothing the tools do not
need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lkm.audit.report import audit_files
    from lkm.btf import Btf
    from lkm.depmod.main import run as run_depmod
    from lkm.errors import FormatError, KernelError, LkmError, ProcessKilled
    from lkm.kernel.check import Checker, CheckResult
    from lkm.kernel.live import LiveKernel
    from lkm.kernel.profile import KernelProfile
    from lkm.kernel.profile import load_cached as load_profile
    from lkm.kernel.virtual import VirtualKernel
    from lkm.kimage import KernelImage
    from lkm.kmod import KmodContext, KmodModule, ModuleDir
    from lkm.module import ModuleFile
    from lkm.signing import Keyring, sign_module, strip_signature, verify_file, verify_module
    from lkm.vm import find_kernel
    from lkm.vm import run as run_in_vm

# public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    "ModuleFile": ("lkm.module", "ModuleFile"),
    "ModuleDir": ("lkm.kmod", "ModuleDir"),
    "KmodContext": ("lkm.kmod", "KmodContext"),
    "KmodModule": ("lkm.kmod", "KmodModule"),
    "run_depmod": ("lkm.depmod.main", "run"),
    "sign_module": ("lkm.signing", "sign_module"),
    "strip_signature": ("lkm.signing", "strip_signature"),
    "verify_module": ("lkm.signing", "verify_module"),
    "verify_file": ("lkm.signing", "verify_file"),
    "Keyring": ("lkm.signing", "Keyring"),
    "KernelImage": ("lkm.kimage", "KernelImage"),
    "Btf": ("lkm.btf", "Btf"),
    "KernelProfile": ("lkm.kernel.profile", "KernelProfile"),
    "load_profile": ("lkm.kernel.profile", "load_cached"),
    "VirtualKernel": ("lkm.kernel.virtual", "VirtualKernel"),
    "LiveKernel": ("lkm.kernel.live", "LiveKernel"),
    "Checker": ("lkm.kernel.check", "Checker"),
    "CheckResult": ("lkm.kernel.check", "CheckResult"),
    "run_in_vm": ("lkm.vm", "run"),
    "find_kernel": ("lkm.vm", "find_kernel"),
    "audit_files": ("lkm.audit.report", "audit_files"),
    "LkmError": ("lkm.errors", "LkmError"),
    "FormatError": ("lkm.errors", "FormatError"),
    "KernelError": ("lkm.errors", "KernelError"),
    "ProcessKilled": ("lkm.errors", "ProcessKilled"),
}

__all__ = [
    "Btf",
    "CheckResult",
    "Checker",
    "FormatError",
    "KernelError",
    "KernelImage",
    "KernelProfile",
    "Keyring",
    "KmodContext",
    "KmodModule",
    "LiveKernel",
    "LkmError",
    "ModuleDir",
    "ModuleFile",
    "ProcessKilled",
    "VirtualKernel",
    "__version__",
    "audit_files",
    "find_kernel",
    "load_profile",
    "run_depmod",
    "run_in_vm",
    "sign_module",
    "strip_signature",
    "verify_file",
    "verify_module",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'lkm' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

"""The backend interface shared by the real kernel and the virtual kernel.

The tools are written once against :class:`KernelBackend`.  It offers the three
module syscalls and the file views the tools read (``/proc/modules``,
``/sys/module/<name>/...``, ``/proc/cmdline``), named by their real paths, so
that a tool reads exactly what kmod reads and a virtual kernel renders exactly
what the real kernel renders.  Failures raise :class:`lkm.errors.KernelError`
carrying the errno; missing view files raise :class:`FileNotFoundError`.
:func:`lkm.kernel.target.get_backend` picks the implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from lkm.kernel.uapi import O_NONBLOCK


@dataclass(frozen=True)
class ProcModulesEntry:
    """One line of /proc/modules, as read back by the tools (lsmod, modprobe -r)."""

    name: str
    size: int
    refcnt: int
    users: tuple[str, ...]  # the "used by" column, as listed
    state: str  # "Live", "Loading", "Unloading"
    address: str
    taint: str  # letters, "" when none


def parse_proc_modules(text: str) -> list[ProcModulesEntry]:
    """Parse /proc/modules (the kernel's format, newest module first)."""
    mods = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6:
            continue
        users = tuple(u for u in f[3].split(",") if u and u != "-")
        taint = f[6].strip("()").rstrip("+-") if len(f) > 6 else ""
        try:
            size, refcnt = int(f[1]), int(f[2]) if f[2] != "-" else 0
        except ValueError:
            continue
        mods.append(ProcModulesEntry(f[0], size, refcnt, users, f[4], f[5], taint))
    return mods


class KernelBackend(ABC):
    """A kernel that modules can be loaded into: the real one or a virtual one."""

    # -- syscalls --------------------------------------------------------------
    @abstractmethod
    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        """Load the module in file ``path`` (finit_module(2)); raise KernelError."""

    @abstractmethod
    def init_module(self, image: bytes, params: str) -> None:
        """Load an uncompressed module image (init_module(2)); raise KernelError."""

    @abstractmethod
    def delete_module(self, name: str, flags: int = O_NONBLOCK) -> None:
        """Unload a module (delete_module(2)); raise KernelError."""

    # -- views -----------------------------------------------------------------
    @abstractmethod
    def read_text(self, path: str) -> str:
        """Contents of a /proc or /sys file, e.g. ``/sys/module/x/refcnt``."""

    @abstractmethod
    def list_dir(self, path: str) -> list[str]:
        """Entries of a /sys directory in readdir order (e.g. holders)."""

    def exists(self, path: str) -> bool:
        try:
            self.read_text(path)
            return True
        except (FileNotFoundError, IsADirectoryError):
            try:
                self.list_dir(path)
                return True
            except (FileNotFoundError, NotADirectoryError):
                return False
        except OSError:
            return True

    @abstractmethod
    def release(self) -> str:
        """The kernel release (``uname -r``)."""

    def module_dir(self) -> str | None:
        """The module directory this kernel's modules come from, when it is not
        ``/lib/modules/<release>`` (a virtual kernel's tree); None for the default."""
        return None

    # -- conveniences built on the views ---------------------------------------
    def modules(self) -> list[ProcModulesEntry]:
        return parse_proc_modules(self.read_text("/proc/modules"))

    def initstate(self, name: str) -> str | None:
        """``live``/``coming``/``going``, "builtin" for a built-in with a sysfs dir, or None."""
        try:
            return self.read_text(f"/sys/module/{name}/initstate").strip()
        except FileNotFoundError:
            return "builtin" if self.exists(f"/sys/module/{name}") else None
        except OSError:
            return None

    def refcnt(self, name: str) -> int:
        return int(self.read_text(f"/sys/module/{name}/refcnt").strip())

    def holders(self, name: str) -> list[str]:
        try:
            return self.list_dir(f"/sys/module/{name}/holders")
        except (FileNotFoundError, NotADirectoryError):
            return []

    def parameters(self, name: str) -> dict[str, str]:
        """Readable parameters of module ``name``: file name -> text of
        /sys/module/<name>/parameters/<file> without its newline (unreadable ones left out;
        none if the directory is missing)."""
        base = f"/sys/module/{name}/parameters"
        try:
            files = self.list_dir(base)
        except OSError:
            return {}
        out = {}
        for f in files:
            try:
                out[f] = self.read_text(f"{base}/{f}").removesuffix("\n")
            except OSError:
                continue
        return out

    def taint(self, name: str) -> str:
        """The module's taint letters (/sys/module/<name>/taint), "" when none or unknown."""
        try:
            return self.read_text(f"/sys/module/{name}/taint").strip()
        except OSError:
            return ""

    def compression(self) -> str | None:
        """The in-kernel module decompression format (/sys/module/compression), if any."""
        try:
            return self.read_text("/sys/module/compression").strip() or None
        except OSError:
            return None

    def cmdline(self) -> str:
        try:
            return self.read_text("/proc/cmdline")
        except OSError:
            return ""

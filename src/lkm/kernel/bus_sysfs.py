"""/sys/bus as drivers/base/bus.c builds it, for the drivers module code registered.

/sys/bus lists the buses (Debian's built-in ones and those modules registered); a bus
directory holds ``devices``, ``drivers``, ``drivers_autoprobe``, ``drivers_probe`` and
``uevent``; a driver's directory ``bind``, ``unbind`` and ``uevent`` (driver.c's
attributes), ``module`` when the driver has an owner (module.c's link), pci's
``new_id``/``remove_id``, and the files the module added (driver_create_file).  No
devices: ``devices`` and the drivers' device links are empty.  Reads of ``uevent`` are
empty, ``drivers_autoprobe`` is 1; bind/unbind/new_id... are write-only (EACCES).
/sys/module/MOD/drivers lists ``BUS:NAME`` for the module's drivers.
"""

from __future__ import annotations

import errno
from typing import Any, TypeVar

from lkm.kernel.kernfs import kernfs_error, kernfs_order
from lkm.kernel.module.state import KernelState

BUS_FILES = ("devices", "drivers", "drivers_autoprobe", "drivers_probe", "uevent")
S = TypeVar("S")
WRITE_ONLY = ("bind", "unbind", "new_id", "remove_id", "drivers_probe")


def substate(k: KernelState, cls: type[S]) -> S | None:
    """The running kernel's state of an API subsystem (None: module code does not run
    here; a fresh one when no code ran yet)."""
    from lkm.kernel.exec.state import ExecKernelState

    if not isinstance(k, ExecKernelState) or k.cannot_run is not None:
        return None
    if k._rt is None and not k.exec_generation:
        c: Any = cls
        return c(None)  # type: ignore[no-any-return]
    return k.runtime().kernel.sub(cls)


def driver_core(k: KernelState) -> object | None:
    from lkm.kernel.api.driver_base import DriverCore

    return substate(k, DriverCore)


def _buses(k: KernelState) -> dict[str, dict[str, tuple[str, list[str]]]]:
    """bus -> driver -> (owner module, extra files)."""
    from lkm.kernel.api.driver_base import BUILTIN_BUSES, DriverCore

    out: dict[str, dict[str, tuple[str, list[str]]]] = {
        name: {} for name, config in BUILTIN_BUSES.values()
        if not config or k.profile.enabled(config)}
    c = driver_core(k)
    if isinstance(c, DriverCore):
        for b in c.buses.values():
            out[b.name] = {n: (d.module, d.files) for n, d in b.drivers.items()}
    return out


def _driver_files(bus: str, module: str, files: list[str]) -> list[str]:
    names = ["bind", "unbind", "uevent", *files]
    if module:
        names.append("module")
    if bus == "pci":
        names += ["new_id", "remove_id"]
    return names


def module_drivers(k: KernelState, module: str) -> list[str]:
    """/sys/module/MOD/drivers: ``bus:name`` of the module's drivers."""
    return kernfs_order([f"{b}:{n}" for b, ds in _buses(k).items()
                         for n, (m, _f) in ds.items() if m == module])


def listdir(k: KernelState, parts: list[str], path: str) -> list[str] | None:
    if parts[:2] != ["sys", "bus"]:
        return None
    buses = _buses(k)
    if len(parts) == 2:
        return kernfs_order(list(buses))
    drivers = buses.get(parts[2])
    if drivers is None:
        return None
    if len(parts) == 3:
        return kernfs_order(list(BUS_FILES))
    if parts[3] == "devices" and len(parts) == 4:
        return []
    if parts[3] != "drivers":
        return None
    if len(parts) == 4:
        return kernfs_order(list(drivers))
    d = drivers.get(parts[4])
    if d is None or len(parts) > 5:
        return None
    return kernfs_order(_driver_files(parts[2], *d))


def read(k: KernelState, parts: list[str], path: str) -> str | None:
    if parts[:2] != ["sys", "bus"] or len(parts) < 3:
        return None
    drivers = _buses(k).get(parts[2])
    if drivers is None:
        return None
    if len(parts) == 4 and parts[3] in BUS_FILES:
        if parts[3] in ("devices", "drivers"):
            raise kernfs_error(errno.EISDIR, path)
        if parts[3] in WRITE_ONLY:
            raise kernfs_error(errno.EACCES, path)
        return "1\n" if parts[3] == "drivers_autoprobe" else ""
    if len(parts) == 5 and parts[3] == "drivers" and parts[4] in drivers:
        raise kernfs_error(errno.EISDIR, path)
    if len(parts) == 6 and parts[3] == "drivers" and parts[4] in drivers:
        files = _driver_files(parts[2], *drivers[parts[4]])
        if parts[5] not in files:
            return None
        if parts[5] in WRITE_ONLY:
            raise kernfs_error(errno.EACCES, path)
        if parts[5] == "module":
            raise kernfs_error(errno.EISDIR, path)  # the link to /sys/module/MOD
        return ""
    return None


def running_kernel(k: KernelState) -> Any:
    """The API's Kernel of a virtual kernel whose module code ran (None otherwise)."""
    from lkm.kernel.exec.state import ExecKernelState

    if not isinstance(k, ExecKernelState) or k.cannot_run is not None:
        return None
    if k._rt is None and not k.exec_generation:
        return None
    return k.runtime().kernel

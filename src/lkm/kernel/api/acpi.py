"""ACPI as the QEMU PC has it, without the devices drivers look for (drivers/acpi/bus.c,
glue.c, utils.c, scan.c; the ACPICA namespace calls).

acpi_bus_register_driver() registers on ``acpi_bus_type`` (/sys/bus/acpi/drivers/NAME);
register_acpi_bus_type() accepts a glue type with match and find_companion.  The
namespace holds none of the objects module drivers ask for: lookups give AE_NOT_FOUND,
walks call nothing, acpi_dev_present() is false.
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kfunc, substate
from lkm.kernel.api.driver_base import (
    read_ptr,
    register_embedded,
    unregister_embedded,
    write_ptr,
)

AE_OK = 0
AE_NOT_FOUND = 5
AE_BAD_PARAMETER = 0x1001


@substate("acpi")
class AcpiGlue:
    """Registered acpi_bus_type glue (addresses)."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.types: list[int] = []

    def to_json(self) -> list[int]:
        return self.types

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> AcpiGlue:
        s = cls(k)
        s.types = [int(a) for a in d]
        return s


@kfunc()
def acpi_bus_register_driver(k: Kernel, driver: int) -> int:
    """drivers/acpi/bus.c (drv.name points at the acpi_driver's name array, drv.owner
    is its owner)."""
    return _register(k, driver, read_ptr(k, driver, "acpi_driver", "owner"))


def _register(k: Kernel, driver: int, owner: int) -> int:
    lay = k.layouts
    drv = driver + lay.offsetof("acpi_driver", "drv")
    write_ptr(k, drv, "device_driver", "name", driver + lay.offsetof("acpi_driver", "name"))
    return register_embedded(k, driver, "acpi_driver", "acpi_bus_type", owner,
                             name_from=None, embedded="drv")


@kfunc()
def __acpi_bus_register_driver(k: Kernel, driver: int, owner: int) -> int:
    """6.12: the owner is passed (acpi_driver has no owner of its own)."""
    return _register(k, driver, owner)


@kfunc()
def acpi_bus_unregister_driver(k: Kernel, driver: int) -> None:
    unregister_embedded(k, driver, "acpi_driver", embedded="drv")


@kfunc()
def register_acpi_bus_type(k: Kernel, type_: int) -> int:
    """drivers/acpi/glue.c."""
    if read_ptr(k, type_, "acpi_bus_type", "match") and \
            read_ptr(k, type_, "acpi_bus_type", "find_companion"):
        k.sub(AcpiGlue).types.append(type_)
        return 0
    return err(errno.ENODEV)


@kfunc()
def unregister_acpi_bus_type(k: Kernel, type_: int) -> int:
    s = k.sub(AcpiGlue)
    if type_ in s.types:
        s.types.remove(type_)
    return 0


@kfunc("acpi_dev_found", "acpi_quirk_skip_acpi_ac_and_battery", "acpi_has_method",
       "acpi_check_dsm", "acpi_is_video_device")
def acpi_dev_present(k: Kernel, a: int, b: int, c: int) -> int:
    return 0


@kfunc("acpi_evaluate_integer", "acpi_evaluate_object_typed", "acpi_get_name",
       "acpi_get_parent", "acpi_get_type", "acpi_get_table", "acpi_get_object_info")
def acpi_get_handle(k: Kernel, a: int, b: int, c: int) -> int:
    return AE_NOT_FOUND


@kfunc()
def acpi_evaluate_object(k: Kernel, handle: int, pathname: int, args: int, ret: int) -> int:
    return AE_NOT_FOUND


@kfunc()
def acpi_get_devices(k: Kernel, hid: int, fn: int, context: int, ret: int) -> int:
    return AE_OK


@kfunc()
def acpi_walk_namespace(k: Kernel, type_: int, start: int, depth: int, a: int, b: int) -> int:
    return AE_OK


@kfunc("acpi_remove_notify_handler")
def acpi_install_notify_handler(k: Kernel, device: int, handler_type: int, handler: int,
                                context: int) -> int:
    return AE_BAD_PARAMETER


@kfunc()
def acpi_match_device_ids(k: Kernel, device: int, ids: int) -> int:
    return err(errno.ENOENT)


@kfunc()
def acpi_dev_get_first_match_dev(k: Kernel, hid: int, uid: int, hrv: int) -> int:
    return 0


@kfunc()
def acpi_bus_get_device(k: Kernel, handle: int, device: int) -> int:
    return err(errno.ENODEV)

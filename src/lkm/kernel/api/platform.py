"""Platform drivers without platform devices (drivers/base/platform.c).

__platform_driver_register() registers on ``platform_bus_type``;
__platform_driver_probe() registers, finds no device bound and unregisters again:
-ENODEV, as the kernel does for a probe-once driver whose device is absent.
__platform_register_drivers() registers an array, undoing on failure.
"""

from __future__ import annotations

import errno

from lkm.kernel.api.core import Kernel, err, kfunc, signed
from lkm.kernel.api.driver_base import register_embedded, unregister_embedded


@kfunc()
def __platform_driver_register(k: Kernel, drv: int, owner: int) -> int:
    """drivers/base/platform.c."""
    return register_embedded(k, drv, "platform_driver", "platform_bus_type", owner,
                             name_from=None)


@kfunc()
def platform_driver_unregister(k: Kernel, drv: int) -> None:
    unregister_embedded(k, drv, "platform_driver")


@kfunc()
def __platform_driver_probe(k: Kernel, drv: int, probe: int, module: int) -> int:
    """drivers/base/platform.c: no device bound to the driver: -ENODEV."""
    rv = __platform_driver_register(k, drv, module)
    if signed(rv, 32):
        return rv
    platform_driver_unregister(k, drv)
    return err(errno.ENODEV)


@kfunc()
def __platform_register_drivers(k: Kernel, drivers: int, count: int, owner: int) -> int:
    """drivers/base/platform.c: all or none."""
    done: list[int] = []
    for i in range(count):
        drv = k.mem.read_u64(drivers + 8 * i)
        rv = __platform_driver_register(k, drv, owner)
        if signed(rv, 32):
            for d in reversed(done):
                platform_driver_unregister(k, d)
            return rv
        done.append(drv)
    return 0


@kfunc()
def platform_unregister_drivers(k: Kernel, drivers: int, count: int) -> None:
    for i in reversed(range(count)):
        platform_driver_unregister(k, k.mem.read_u64(drivers + 8 * i))

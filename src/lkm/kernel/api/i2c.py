"""I2C drivers without adapters (drivers/i2c/i2c-core-base.c).

i2c_register_driver() sets the owner and ``i2c_bus_type``, empties the driver's client
list and registers it (/sys/bus/i2c/drivers/NAME); there is no adapter to try the driver's
detect() on.  i2c_del_driver() unregisters.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import init_list_head, register_embedded, unregister_embedded


@kfunc()
def i2c_register_driver(k: Kernel, owner: int, driver: int) -> int:
    """drivers/i2c/i2c-core-base.c (the name is the embedded driver's own)."""
    init_list_head(k, driver + k.layouts.offsetof("i2c_driver", "clients"))
    return register_embedded(k, driver, "i2c_driver", "i2c_bus_type", owner, name_from=None)


@kfunc()
def i2c_del_driver(k: Kernel, driver: int) -> None:
    unregister_embedded(k, driver, "i2c_driver")


@kfunc()
def i2c_get_adapter(k: Kernel, nr: int) -> int:
    return 0


@kfunc()
def i2c_for_each_dev(k: Kernel, data: int, fn: int) -> int:
    return 0

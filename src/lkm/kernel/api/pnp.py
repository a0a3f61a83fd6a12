"""PnP drivers without PnP devices (drivers/pnp/driver.c): pnp_register_driver() names the
embedded driver after the pnp_driver and registers it on ``pnp_bus_type``
(/sys/bus/pnp/drivers/NAME)."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import register_embedded, unregister_embedded


@kfunc()
def pnp_register_driver(k: Kernel, drv: int) -> int:
    """drivers/pnp/driver.c (the owner is left as the module set it)."""
    return register_embedded(k, drv, "pnp_driver", "pnp_bus_type", None)


@kfunc()
def pnp_unregister_driver(k: Kernel, drv: int) -> None:
    unregister_embedded(k, drv, "pnp_driver")

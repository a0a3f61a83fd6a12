"""SPI drivers without controllers (drivers/spi/spi.c): __spi_register_driver() sets
``spi_bus_type`` and the owner and registers the driver (/sys/bus/spi/drivers/NAME)."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import register_embedded


@kfunc()
def __spi_register_driver(k: Kernel, owner: int, sdrv: int) -> int:
    """drivers/spi/spi.c (spi_unregister_driver is inline: driver_unregister)."""
    return register_embedded(k, sdrv, "spi_driver", "spi_bus_type", owner, name_from=None)

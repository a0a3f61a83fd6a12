"""PCI drivers without PCI devices (drivers/pci/pci-driver.c, drivers/pci/search.c).

__pci_register_driver() fills the embedded device_driver (name, ``pci_bus_type``, owner,
mod_name), empties the dynamic id list and registers it: /sys/bus/pci/drivers/NAME; no
device matches.  The device searches find nothing (NULL), so a driver looking for its
chipset (pci_get_device) takes its "not present" path, usually -ENODEV.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import init_list_head, register_embedded, unregister_embedded


@kfunc()
def __pci_register_driver(k: Kernel, drv: int, owner: int, mod_name: int) -> int:
    """drivers/pci/pci-driver.c."""
    dynids = drv + k.layouts.offsetof("pci_driver", "dynids")
    init_list_head(k, dynids + k.layouts.offsetof("pci_dynids", "list"))
    return register_embedded(k, drv, "pci_driver", "pci_bus_type", owner, mod_name)


@kfunc()
def pci_unregister_driver(k: Kernel, drv: int) -> None:
    unregister_embedded(k, drv, "pci_driver")


@kfunc("pci_get_subsys", "pci_get_class", "pci_get_domain_bus_and_slot")
def pci_get_device(k: Kernel, a: int, b: int, c: int) -> int:
    """No PCI device: NULL (the reference passed in, if any, is dropped)."""
    return 0


@kfunc()
def pci_dev_present(k: Kernel, ids: int) -> int:
    return 0


@kfunc()
def pci_dev_put(k: Kernel, dev: int) -> None:
    return None


@kfunc()
def pci_find_bus(k: Kernel, domain: int, busnr: int) -> int:
    return 0

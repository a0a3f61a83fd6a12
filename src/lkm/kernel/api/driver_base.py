"""The driver core without devices (drivers/base/bus.c, driver.c, module.c).

A bus is a ``struct bus_type``: the kernel's own (``pci_bus_type``, ``platform_bus_type``,
``i2c_bus_type``, ``spi_bus_type``, ``serio_bus``, ``acpi_bus_type``, ``pnp_bus_type``: the
buses Debian builds in) exist from boot, a module's appear at bus_register() and go at
bus_unregister().  driver_register() puts a ``struct device_driver`` on its bus, so that
/sys/bus/BUS/drivers/NAME exists (with ``module`` when it has an owner, and
/sys/module/MOD/drivers/BUS:NAME); no device is present, so nothing is probed.  The
kernel's failures: a bus never registered (-EINVAL, "was unable to register with
bus_type"), a name already on the bus (-EBUSY, "already registered, aborting...").

The books (:class:`DriverCore`) persist with the virtual kernel; :func:`bus_drivers` and
:func:`buses` are what /sys shows.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, substate

# the buses built into Debian's kernels: symbol -> name (those whose CONFIG is y)
BUILTIN_BUSES = {"pci_bus_type": ("pci", "PCI"), "platform_bus_type": ("platform", ""),
                 "i2c_bus_type": ("i2c", "I2C"), "spi_bus_type": ("spi", "SPI"),
                 "serio_bus": ("serio", "SERIO"), "acpi_bus_type": ("acpi", "ACPI"),
                 "pnp_bus_type": ("pnp", "PNP"), "cpu_subsys": ("cpu", ""),
                 "gpio_bus_type": ("gpio", "GPIOLIB")}


@dataclass
class Driver:
    addr: int
    module: str  # the owner's name ("" for none)
    files: list[str] = field(default_factory=list)  # driver_create_file() attributes


@dataclass
class Bus:
    name: str
    addr: int
    module: str = ""
    drivers: dict[str, Driver] = field(default_factory=dict)


@substate("driver_base")
class DriverCore:
    """Registered buses (by struct bus_type address) and their drivers."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.buses: dict[int, Bus] = {}

    def to_json(self) -> list[Any]:
        return [[b.name, b.addr, b.module,
                 [[n, d.addr, d.module, d.files] for n, d in b.drivers.items()]]
                for b in self.buses.values()]

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> DriverCore:
        s = cls(k)
        for name, addr, module, drivers in d:
            b = Bus(name, addr, module)
            b.drivers = {n: Driver(a, m, list(f)) for n, a, m, f in drivers}
            s.buses[addr] = b
        return s

    def by_name(self, name: str) -> Bus | None:
        for b in self.buses.values():
            if b.name == name:
                return b
        return None

    def driver_at(self, drv: int) -> tuple[Bus, str] | None:
        for b in self.buses.values():
            for n, d in b.drivers.items():
                if d.addr == drv:
                    return b, n
        return None


def core(k: Kernel) -> DriverCore:
    return k.sub(DriverCore)


def _off(k: Kernel, struct_: str, path: str) -> int:
    return k.layouts.offsetof(struct_, path)


def read_ptr(k: Kernel, addr: int, struct_: str, path: str) -> int:
    return k.mem.read_u64(addr + _off(k, struct_, path))


def write_ptr(k: Kernel, addr: int, struct_: str, path: str, value: int) -> None:
    k.mem.write_u64(addr + _off(k, struct_, path), value)


def init_list_head(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, addr)
    k.mem.write_u64(addr + 8, addr)


def module_name(k: Kernel, mod: int) -> str:
    """struct module's name (the owner of a driver)."""
    if not mod:
        return ""
    return k.text(mod + _off(k, "module", "name"), 56)


def _builtin_bus(name: str, config: str) -> Any:
    def init(k: Kernel, addr: int) -> None:
        write_ptr(k, addr, "bus_type", "name", k.rt.kdata_scratch(name.encode() + b"\0"))
        if not config or k.config(config):
            core(k).buses.setdefault(addr, Bus(name, addr))
    return init


for _sym, (_name, _config) in BUILTIN_BUSES.items():
    kdata(_sym, lambda k: k.layouts.sizeof("bus_type"))(_builtin_bus(_name, _config))


def bus_type(k: Kernel, symbol: str) -> int:
    """The address of a built-in bus (made, and registered, on first use)."""
    return k.symbol(symbol)


# -- buses ----------------------------------------------------------------------------------

@kfunc()
def bus_register(k: Kernel, bus: int) -> int:
    """drivers/base/bus.c: the bus appears under /sys/bus (a name taken: -EEXIST)."""
    name = k.text(read_ptr(k, bus, "bus_type", "name"))
    c = core(k)
    if c.by_name(name) is not None:
        return err(errno.EEXIST)
    c.buses[bus] = Bus(name, bus, _loading_module(k))
    return 0


@kfunc()
def bus_unregister(k: Kernel, bus: int) -> None:
    core(k).buses.pop(bus, None)


def _loading_module(k: Kernel) -> str:
    """The module whose code is running (the one being loaded or unloaded)."""
    try:
        site = k.lookup(k.caller)
    except IndexError:  # called from Python, not module code
        return ""
    return site[3] or "" if site is not None else ""


# -- drivers --------------------------------------------------------------------------------

@kfunc()
def driver_register(k: Kernel, drv: int) -> int:
    """drivers/base/driver.c."""
    name = k.text(read_ptr(k, drv, "device_driver", "name"))
    bus_addr = read_ptr(k, drv, "device_driver", "bus")
    c = core(k)
    bus = c.buses.get(bus_addr)
    if bus is None:
        bus_name = k.text(read_ptr(k, bus_addr, "bus_type", "name")) if bus_addr else "(null)"
        k.log.err(f"Driver '{name}' was unable to register with bus_type '{bus_name}' "
                  "because the bus was not initialized.")
        return err(errno.EINVAL)
    if name in bus.drivers:
        k.log.err(f"Error: Driver '{name}' is already registered, aborting...")
        return err(errno.EBUSY)
    owner = read_ptr(k, drv, "device_driver", "owner")
    bus.drivers[name] = Driver(drv, module_name(k, owner))
    return 0


@kfunc()
def driver_unregister(k: Kernel, drv: int) -> None:
    """drivers/base/driver.c: "Unexpected driver unregister!" for one never registered."""
    c = core(k)
    got = c.driver_at(drv)
    if got is None:
        k.log.warn("Unexpected driver unregister!")
        return
    bus, name = got
    del bus.drivers[name]


@kfunc()
def driver_find(k: Kernel, name: int, bus: int) -> int:
    b = core(k).buses.get(bus)
    d = b.drivers.get(k.text(name)) if b is not None else None
    return d.addr if d is not None else 0


@kfunc()
def driver_create_file(k: Kernel, drv: int, attr: int) -> int:
    """drivers/base/driver.c: an attribute file in the driver's directory."""
    got = core(k).driver_at(drv)
    if got is None:
        return err(errno.EINVAL)
    bus, name = got
    attr_name = k.text(k.mem.read_u64(attr + _off(k, "driver_attribute", "attr.name")))
    bus.drivers[name].files.append(attr_name)
    return 0


@kfunc()
def driver_remove_file(k: Kernel, drv: int, attr: int) -> None:
    got = core(k).driver_at(drv)
    if got is not None:
        bus, name = got
        attr_name = k.text(k.mem.read_u64(attr + _off(k, "driver_attribute", "attr.name")))
        files = bus.drivers[name].files
        if attr_name in files:
            files.remove(attr_name)


@kfunc()
def bus_for_each_dev(k: Kernel, bus: int, start: int, data: int, fn: int) -> int:
    """No devices: fn is never called."""
    return 0


@kfunc()
def bus_for_each_drv(k: Kernel, bus: int, start: int, data: int, fn: int) -> int:
    b = core(k).buses.get(bus)
    for d in list(b.drivers.values()) if b is not None else []:
        rv = k.cpu.call(fn, [d.addr, data]) & 0xFFFFFFFF
        if rv:
            return rv
    return 0


@kfunc()
def bus_find_device(k: Kernel, bus: int, start: int, data: int, match: int) -> int:
    return 0


@kfunc()
def driver_find_device(k: Kernel, drv: int, start: int, data: int, match: int) -> int:
    return 0


@kfunc()
def driver_for_each_device(k: Kernel, drv: int, start: int, data: int, fn: int) -> int:
    return 0


@kfunc()
def bus_register_notifier(k: Kernel, bus: int, nb: int) -> int:
    return 0


@kfunc()
def bus_unregister_notifier(k: Kernel, bus: int, nb: int) -> int:
    return 0


@kfunc()
def driver_attach(k: Kernel, drv: int) -> int:
    return 0


@kfunc()
def bus_rescan_devices(k: Kernel, bus: int) -> int:
    return 0


# -- a bus's register helper: fill the embedded device_driver, then driver_register ----------

def register_embedded(k: Kernel, drv: int, outer: str, bus_symbol: str, owner: int | None,
                      mod_name: int = 0, name_from: str | None = "name",
                      embedded: str = "driver") -> int:
    """``outer`` (pci_driver, i2c_driver...) embeds ``driver``: set its bus (the built-in
    ``bus_symbol`` or a bus_type address), owner, mod_name (and name from the outer
    struct's ``name_from``), then driver_register()."""
    d = drv + _off(k, outer, embedded)
    if name_from is not None:
        write_ptr(k, d, "device_driver", "name", read_ptr(k, drv, outer, name_from))
    write_ptr(k, d, "device_driver", "bus", k.symbol(bus_symbol))
    if owner is not None:  # None: left as the module set it
        write_ptr(k, d, "device_driver", "owner", owner)
    if mod_name:
        write_ptr(k, d, "device_driver", "mod_name", mod_name)
    return driver_register(k, d)


def unregister_embedded(k: Kernel, drv: int, outer: str, embedded: str = "driver") -> None:
    driver_unregister(k, drv + _off(k, outer, embedded))


def bus_drivers(c: DriverCore, bus: str) -> dict[str, Driver] | None:
    b = c.by_name(bus)
    return b.drivers if b is not None else None


def buses(c: DriverCore) -> list[str]:
    return sorted(b.name for b in c.buses.values())

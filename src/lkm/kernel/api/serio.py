"""serio drivers (drivers/input/serio/serio.c).

__serio_register_driver() registers on ``serio_bus`` with manual_bind held true during
registration, then restores it; attaching to ports is deferred work, and the virtual
machine has no serio port, so nothing is bound.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import register_embedded, unregister_embedded


@kfunc()
def __serio_register_driver(k: Kernel, drv: int, owner: int, mod_name: int) -> int:
    """drivers/input/serio/serio.c."""
    at = drv + k.layouts.offsetof("serio_driver", "manual_bind")  # a bool
    old = k.mem.read(at, 1)[0]
    k.mem.write(at, b"\1")
    rv = register_embedded(k, drv, "serio_driver", "serio_bus", owner, mod_name,
                           name_from=None)
    k.mem.write(at, bytes([old]))
    return rv


@kfunc()
def serio_unregister_driver(k: Kernel, drv: int) -> None:
    unregister_embedded(k, drv, "serio_driver")

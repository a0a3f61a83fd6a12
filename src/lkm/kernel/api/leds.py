"""LED triggers with no LEDs (drivers/leds/led-triggers.c).

led_trigger_register() adds a trigger by name (-EEXIST when the name is taken; the
kernel's list is shown in an LED's ``trigger`` file, and there are no LEDs);
led_trigger_register_simple() allocates and registers one, storing it in ``*tp``.
Events and blinks reach no LED.
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kfunc, substate
from lkm.kernel.api.driver_base import init_list_head, read_ptr, write_ptr
from lkm.kernel.api.slab import slab


@substate("leds")
class LedTriggers:
    """Registered triggers: address -> name."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.triggers: dict[int, str] = {}

    def to_json(self) -> list[Any]:
        return [[a, n] for a, n in self.triggers.items()]

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> LedTriggers:
        s = cls(k)
        s.triggers = {int(a): str(n) for a, n in d}
        return s


@kfunc()
def led_trigger_register(k: Kernel, trig: int) -> int:
    """drivers/leds/led-triggers.c."""
    s = k.sub(LedTriggers)
    name = k.text(read_ptr(k, trig, "led_trigger", "name"))
    if name in s.triggers.values():
        return err(errno.EEXIST)
    init_list_head(k, trig + k.layouts.offsetof("led_trigger", "led_cdevs"))
    s.triggers[trig] = name
    return 0


@kfunc()
def led_trigger_unregister(k: Kernel, trig: int) -> None:
    k.sub(LedTriggers).triggers.pop(trig, None)


@kfunc()
def led_trigger_register_simple(k: Kernel, name: int, tp: int) -> None:
    """drivers/leds/led-triggers.c: on failure *tp is NULL (and a warning is printed)."""
    trig = slab(k).kmalloc(k.layouts.sizeof("led_trigger"), 0)
    write_ptr(k, trig, "led_trigger", "name", name)
    if led_trigger_register(k, trig):
        k.log.warn(f"LED trigger {k.text(name)} failed to register (-17)")
        slab(k).kfree(trig)
        trig = 0
    k.mem.write_u64(tp, trig)


@kfunc()
def led_trigger_unregister_simple(k: Kernel, trig: int) -> None:
    if trig:
        led_trigger_unregister(k, trig)
        slab(k).kfree(trig)


@kfunc("led_trigger_blink", "led_trigger_blink_oneshot", "led_trigger_event")
def led_trigger_event(k: Kernel, trig: int, a: int) -> None:
    return None


@kfunc()
def devm_led_trigger_register(k: Kernel, dev: int, trig: int) -> int:
    return led_trigger_register(k, trig)

"""kernel/panic.c: panic(), taints, and __warn_printk (the text of a WARN with a message).

A WARN(cond, fmt, ...) on x86 first calls __warn_printk(), which prints the cut-here line
and the message; the ``ud2`` that follows carries BUGFLAG_NO_CUT_HERE and is reported by
:func:`lkm.kernel.exec.oops.warn`.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.exec.faults import Panic

CUT_HERE = "------------[ cut here ]------------"
KERN_WARNING = 4


def kernel_panic(k: Kernel, text: str) -> None:
    """panic() from the kernel itself: never returns; the runtime prints it."""
    raise Panic(text, k.caller)


@kfunc()
def __warn_printk(k: Kernel, fmt: int) -> None:
    """kernel/panic.c: pr_warn(CUT_HERE), then vprintk(fmt, args)."""
    from lkm.kernel.api.printk import printk, vprintk_args

    printk(k, KERN_WARNING, CUT_HERE)
    vprintk_args(k, fmt, k.cpu.args(1))


@kfunc()
def panic(k: Kernel, fmt: int) -> None:
    """kernel/panic.c panic(fmt, ...)."""
    from lkm.kernel.api.printk import format_text

    text = format_text(k, fmt, k.cpu.args(1)).decode("utf-8", "surrogateescape")
    kernel_panic(k, text.removesuffix("\n"))


@kfunc()
def add_taint(k: Kernel, flag: int, lockdep_ok: int) -> None:
    """kernel/panic.c."""
    k.add_taint(flag & 0xFFFFFFFF)


@kfunc()
def test_taint(k: Kernel, flag: int) -> int:
    return int(k.rt.kstate.test_taint(flag & 0xFFFFFFFF))

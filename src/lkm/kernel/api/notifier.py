"""Notifier chains (kernel/notifier.c), kept in memory as the kernel keeps them: a chain
head's ``head`` points at the first ``notifier_block``, each ``next`` at the following
one, in descending ``priority`` (a new block goes after those of equal priority).
Registering a block already on the chain warns "notifier callback %ps already
registered" and gives -EEXIST; calling a chain runs each ``notifier_call(nb, val, v)``
until one returns with NOTIFY_STOP_MASK.  The atomic, blocking, raw and SRCU heads differ
only in their lock (one CPU here).
"""

from __future__ import annotations

import errno

from lkm.kernel.api.core import DATA, KData, Kernel, err, kfunc

NOTIFY_STOP_MASK = 0x8000
NOTIFY_DONE = 0


def _next(k: Kernel, nb: int) -> int:
    return nb + k.layouts.offsetof("notifier_block", "next")


def _prio(k: Kernel, nb: int) -> int:
    v = k.mem.read_u32(nb + k.layouts.offsetof("notifier_block", "priority"))
    return v - (1 << 32) if v >> 31 else v


def chain_register(k: Kernel, head: int, nb: int, unique_priority: bool = False) -> int:
    """notifier_chain_register(): ``head`` is the address of the ``head`` pointer."""
    link = head
    prio = _prio(k, nb)
    while (cur := k.mem.read_u64(link)) != 0:
        if cur == nb:
            k.log.warn(f"notifier callback {k.site(k.mem.read_u64(nb))} already registered")
            return err(errno.EEXIST)
        if prio > _prio(k, cur):
            break
        if unique_priority and prio == _prio(k, cur):
            return err(errno.EBUSY)
        link = _next(k, cur)
    k.mem.write_u64(_next(k, nb), k.mem.read_u64(link))
    k.mem.write_u64(link, nb)
    return 0


def chain_unregister(k: Kernel, head: int, nb: int) -> int:
    link = head
    while (cur := k.mem.read_u64(link)) != 0:
        if cur == nb:
            k.mem.write_u64(link, k.mem.read_u64(_next(k, nb)))
            return 0
        link = _next(k, cur)
    return err(errno.ENOENT)


def chain_call(k: Kernel, head: int, val: int, v: int) -> int:
    ret = NOTIFY_DONE
    nb = k.mem.read_u64(head)
    while nb:
        following = k.mem.read_u64(_next(k, nb))
        ret = k.cpu.call(k.mem.read_u64(nb), [nb, val, v]) & 0xFFFFFFFF
        if ret & NOTIFY_STOP_MASK:
            break
        nb = following
    return ret


def _head(k: Kernel, kind: str, nh: int) -> int:
    return nh + k.layouts.offsetof(kind, "head")


def _kinds() -> list[tuple[str, str]]:
    return [("atomic", "atomic_notifier_head"), ("blocking", "blocking_notifier_head"),
            ("raw", "raw_notifier_head"), ("srcu", "srcu_notifier_head")]


def _make(kind: str, struct_: str) -> None:
    def register(k: Kernel, nh: int, nb: int) -> int:
        return chain_register(k, _head(k, struct_, nh), nb)

    def unregister(k: Kernel, nh: int, nb: int) -> int:
        return chain_unregister(k, _head(k, struct_, nh), nb)

    def call_chain(k: Kernel, nh: int, val: int, v: int) -> int:
        return chain_call(k, _head(k, struct_, nh), val, v)

    for fn, name in ((register, f"{kind}_notifier_chain_register"),
                     (unregister, f"{kind}_notifier_chain_unregister"),
                     (call_chain, f"{kind}_notifier_call_chain")):
        fn.__name__ = name
        kfunc()(fn)


for _kind, _struct in _kinds():
    _make(_kind, _struct)


@kfunc()
def blocking_notifier_chain_register_unique_prio(k: Kernel, nh: int, nb: int) -> int:
    return chain_register(k, _head(k, "blocking_notifier_head", nh), nb, True)


@kfunc()
def atomic_notifier_chain_register_unique_prio(k: Kernel, nh: int, nb: int) -> int:
    return chain_register(k, _head(k, "atomic_notifier_head", nh), nb, True)


@kfunc()
def srcu_init_notifier_head(k: Kernel, nh: int) -> None:
    k.mem.write_u64(_head(k, "srcu_notifier_head", nh), 0)


# the kernel's own chains modules register on, with no event happening here
def _simple(name: str) -> None:
    def register(k: Kernel, nb: int) -> int:
        return chain_register(k, _own(k, name), nb)

    def unregister(k: Kernel, nb: int) -> int:
        return chain_unregister(k, _own(k, name), nb)

    register.__name__, unregister.__name__ = f"register_{name}", f"unregister_{name}"
    kfunc()(register)
    kfunc()(unregister)


def _own(k: Kernel, name: str) -> int:
    """The head pointer of a kernel-internal chain (kernel data, made on first use)."""
    sym = f"__lkm_chain_{name}"
    if sym not in DATA:
        DATA[sym] = KData(sym, 8, None)
    return k.symbol(sym)


for _name in ("reboot_notifier", "die_notifier", "netevent_notifier", "inetaddr_notifier",
              "inet6addr_notifier", "keyboard_notifier", "vt_notifier", "oom_notifier",
              "module_notifier", "acpi_notifier", "memory_notifier", "pm_notifier",
              "inetaddr_validator_notifier", "inet6addr_validator_notifier",
              "dcbevent_notifier", "switchdev_notifier", "switchdev_blocking_notifier"):
    _simple(_name)


for _head_name in ("panic_notifier_list", "reboot_notifier_list", "netlink_chain"):
    DATA[_head_name] = KData(_head_name, 16, None)  # an atomic/blocking head: all zero

"""The driver-model and subsystem-registration API (kernel/api/driver_base.py, nls.py,
filesystems.py, notifier.py, find_bit.py, list_debug.py, workqueue.py, timer.py,
platform_checks.py, crypto.py), called directly on structs laid out by the 6.1 BTF."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Tree
from lkm.kernel.api.core import IS_ERR_VALUE, Kernel, err

pytestmark = pytest.mark.trees


@pytest.fixture(scope="module")
def profile(tree61: Tree) -> Any:
    from lkm.kernel.profile import load_cached

    return load_cached(tree61.root)


@pytest.fixture
def k(profile: Any) -> Iterator[Kernel]:
    from lkm.kernel.exec.runtime import load_api
    from lkm.kernel.exec.state import ExecKernelState
    from lkm.kernel.printk import Printk

    load_api()
    ks = ExecKernelState(profile)
    ks.enter(Printk(ks.once), "insmod")
    yield ks.runtime().kernel


def alloc(k: Kernel, struct_: str) -> int:
    from lkm.kernel.api.slab import slab

    return slab(k).kmalloc(k.layouts.sizeof(struct_), 0)


def cstring(k: Kernel, text: str) -> int:
    from lkm.kernel.api.slab import slab

    a = slab(k).kmalloc(len(text) + 1, 0)
    k.mem.write(a, text.encode() + b"\0")
    return a


def put(k: Kernel, addr: int, struct_: str, path: str, value: int, size: int = 8) -> None:
    k.mem.write(addr + k.layouts.offsetof(struct_, path), value.to_bytes(size, "little"))


def lines(k: Kernel) -> list[str]:
    return [t for _lv, t in k.log.records]


def test_driver_register_duplicate_and_unknown_bus(k: Kernel) -> None:
    from lkm.kernel.api import driver_base as db

    drv, again, stray = (alloc(k, "device_driver") for _ in range(3))
    for d in (drv, again):
        put(k, d, "device_driver", "name", cstring(k, "foo"))
        put(k, d, "device_driver", "bus", k.symbol("pci_bus_type"))
    assert db.driver_register(k, drv) == 0
    assert db.driver_register(k, again) == err(errno.EBUSY)
    assert "Error: Driver 'foo' is already registered, aborting..." in lines(k)
    bus = alloc(k, "bus_type")
    put(k, bus, "bus_type", "name", cstring(k, "nowhere"))
    put(k, stray, "device_driver", "name", cstring(k, "bar"))
    put(k, stray, "device_driver", "bus", bus)
    assert db.driver_register(k, stray) == err(errno.EINVAL)
    assert ("Driver 'bar' was unable to register with bus_type 'nowhere' because the bus "
            "was not initialized.") in lines(k)
    assert db.bus_register(k, bus) == 0
    assert db.driver_register(k, stray) == 0
    assert db.bus_drivers(db.core(k), "nowhere") is not None
    assert set(db.bus_drivers(db.core(k), "pci") or {}) == {"foo"}
    db.driver_unregister(k, drv)
    assert not db.bus_drivers(db.core(k), "pci")
    db.driver_unregister(k, drv)
    assert lines(k)[-1] == "Unexpected driver unregister!"


def test_platform_driver_probe_without_a_device_is_enodev(k: Kernel) -> None:
    from lkm.kernel.api import driver_base as db
    from lkm.kernel.api.platform import __platform_driver_probe

    pdrv = alloc(k, "platform_driver")
    put(k, pdrv, "platform_driver", "driver.name", cstring(k, "once"))
    assert __platform_driver_probe(k, pdrv, 0, 0) == err(errno.ENODEV)
    assert not db.bus_drivers(db.core(k), "platform")


def test_nls_tables_are_linked_through_next(k: Kernel) -> None:
    from lkm.kernel.api import nls

    a, b = alloc(k, "nls_table"), alloc(k, "nls_table")
    put(k, a, "nls_table", "charset", cstring(k, "cp437"))
    put(k, b, "nls_table", "charset", cstring(k, "utf8"))
    assert nls.__register_nls(k, a, 0) == 0
    assert nls.__register_nls(k, b, 0) == 0
    assert nls.__register_nls(k, a, 0) == err(errno.EBUSY)
    nxt = k.layouts.offsetof("nls_table", "next")
    assert k.mem.read_u64(b + nxt) == a
    assert k.mem.read_u64(a + nxt) == k.symbol("default_table")
    assert nls.load_nls_default(k) == b
    assert nls.load_nls(k, cstring(k, "cp437")) == a
    assert nls.load_nls(k, cstring(k, "koi8-r")) == 0
    assert nls.unregister_nls(k, b) == 0
    assert nls.unregister_nls(k, b) == err(errno.EINVAL)
    assert nls.charsets(k) == ["cp437"]


def test_register_filesystem(k: Kernel) -> None:
    from lkm.kernel.api import filesystems as fs

    a, b, c = (alloc(k, "file_system_type") for _ in range(3))
    put(k, a, "file_system_type", "name", cstring(k, "myfs"))
    put(k, a, "file_system_type", "fs_flags", fs.FS_REQUIRES_DEV, 4)
    put(k, b, "file_system_type", "name", cstring(k, "myfs"))
    put(k, c, "file_system_type", "name", cstring(k, "proc"))
    assert fs.register_filesystem(k, a) == 0
    assert fs.register_filesystem(k, b) == err(errno.EBUSY)
    assert fs.register_filesystem(k, c) == err(errno.EBUSY)
    text = fs.proc_filesystems(k.sub(fs.FileSystems))
    assert text.startswith("nodev\tsysfs\n") and text.endswith("\n\tmyfs\n")
    assert fs.unregister_filesystem(k, a) == 0
    assert fs.unregister_filesystem(k, a) == err(errno.EINVAL)


def test_notifier_chain_orders_by_priority(k: Kernel) -> None:
    from lkm.kernel.api import notifier as n

    head = alloc(k, "blocking_notifier_head")
    blocks = []
    for prio in (0, 10, 0, 5):
        nb = alloc(k, "notifier_block")
        put(k, nb, "notifier_block", "priority", prio, 4)
        blocks.append(nb)
        assert n.chain_register(k, head + k.layouts.offsetof(
            "blocking_notifier_head", "head"), nb) == 0
    order = []
    cur = k.mem.read_u64(head + k.layouts.offsetof("blocking_notifier_head", "head"))
    while cur:
        order.append(blocks.index(cur))
        cur = k.mem.read_u64(cur + k.layouts.offsetof("notifier_block", "next"))
    assert order == [1, 3, 0, 2]
    h = head + k.layouts.offsetof("blocking_notifier_head", "head")
    assert n.chain_register(k, h, blocks[3]) == err(errno.EEXIST)
    assert n.chain_unregister(k, h, blocks[1]) == 0
    assert n.chain_unregister(k, h, blocks[1]) == err(errno.ENOENT)


def test_find_bit(k: Kernel) -> None:
    from lkm.kernel.api import find_bit as fb

    a = cstring(k, "")
    k.mem.write(a, (0b1010_0000 | 1 << 70).to_bytes(16, "little"))
    assert fb._find_first_bit(k, a, 128) == 5
    assert fb._find_next_bit(k, a, 128, 6) == 7
    assert fb._find_next_bit(k, a, 128, 8) == 70
    assert fb._find_next_bit(k, a, 64, 8) == 64
    assert fb._find_first_zero_bit(k, a, 128) == 0
    assert fb._find_last_bit(k, a, 128) == 70


def test_list_debug_catches_corruption(k: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    from lkm.kernel.api.list_debug import __list_add_valid
    from lkm.kernel.exec.faults import KernelBug

    monkeypatch.setattr(Kernel, "caller", property(lambda self: 0))  # no module frame
    head, new = alloc(k, "list_head"), alloc(k, "list_head")
    k.mem.write_u64(head, head)
    k.mem.write_u64(head + 8, head)
    assert __list_add_valid(k, new, head, head) == 1
    k.mem.write_u64(head + 8, 0x1234)
    with pytest.raises(KernelBug):
        __list_add_valid(k, new, head, head)
    assert lines(k)[-1].startswith("list_add corruption. next->prev should be prev")


def test_work_is_pending_once_and_cancelled(k: Kernel) -> None:
    from lkm.kernel.api import workqueue as wq

    q = wq.alloc_workqueue(k, cstring(k, "mywq"), 0, 1)
    work = alloc(k, "work_struct")
    assert wq.queue_work_on(k, 0, q, work) == 1
    assert wq.queue_work_on(k, 0, q, work) == 0
    assert wq.work_busy(k, work)
    assert wq.cancel_work_sync(k, work) == 1
    assert wq.cancel_work_sync(k, work) == 0
    assert wq.queue_work_on(k, 0, q, work) == 1
    wq.cancel_work_sync(k, work)
    wq.destroy_workqueue(k, q)


def test_timers(k: Kernel) -> None:
    from lkm.kernel.api import timer

    t = alloc(k, "timer_list")
    timer.init_timer_key(k, t, 0x1000, 0, 0, 0)
    assert timer.mod_timer(k, t, 5) == 0
    assert timer.mod_timer(k, t, 6) == 1
    assert timer.del_timer(k, t) == 1
    assert timer.del_timer(k, t) == 0


def test_dmi_and_cpu_match_answer_for_the_qemu_pc(k: Kernel) -> None:
    from lkm.kernel.api import platform_checks as pc

    lay = k.layouts
    table = cstring(k, "\0" * (3 * lay.sizeof("dmi_system_id")))
    fields = lay.enum("dmi_field")
    sub = lay.offsetof("dmi_strmatch", "substr")
    m0 = table + lay.offsetof("dmi_system_id", "matches")
    k.mem.write(m0, bytes([fields["DMI_SYS_VENDOR"]]))
    k.mem.write(m0 + sub, b"QEMU\0")
    e1 = table + lay.sizeof("dmi_system_id")
    m1 = e1 + lay.offsetof("dmi_system_id", "matches")
    k.mem.write(m1, bytes([fields["DMI_PRODUCT_NAME"] | 0x80]))  # exact
    k.mem.write(m1 + sub, b"Standard PC\0")
    assert pc.dmi_check_system(k, table) == 1
    assert pc.dmi_first_match(k, table) == table
    ids = cstring(k, "\0" * (3 * lay.sizeof("x86_cpu_id")))
    put(k, ids, "x86_cpu_id", "vendor", 0, 2)
    put(k, ids, "x86_cpu_id", "family", 6, 2)
    put(k, ids, "x86_cpu_id", "model", 0x55, 2)
    assert pc.x86_match_cpu(k, ids) == 0
    second = ids + lay.sizeof("x86_cpu_id")
    put(k, second, "x86_cpu_id", "vendor", pc.X86_VENDOR_ANY, 2)
    put(k, second, "x86_cpu_id", "family", 6, 2)
    assert pc.x86_match_cpu(k, ids) == second


def test_crypto_driver_names_are_unique(k: Kernel) -> None:
    from lkm.kernel.api import crypto

    a, b = alloc(k, "shash_alg"), alloc(k, "shash_alg")
    for alg in (a, b):
        put(k, alg, "shash_alg", "digestsize", 4, 4)
        base = alg + k.layouts.offsetof("shash_alg", "base")
        k.mem.write(base + k.layouts.offsetof("crypto_alg", "cra_name"), b"myhash\0")
    from lkm.kernel.api.core import FUNCTIONS

    reg = FUNCTIONS["crypto_register_shash"].fn
    assert reg(k, a) == 0
    assert reg(k, b) == err(errno.EEXIST)
    tfm = crypto.crypto_alloc_shash(k, cstring(k, "myhash"), 0, 0)
    assert tfm and not IS_ERR_VALUE(tfm)
    assert crypto.crypto_alloc_shash(k, cstring(k, "nohash"), 0, 0) == err(errno.ENOENT)
    assert "type         : shash\nblocksize    : 0\ndigestsize   : 4\n" in \
        crypto.proc_crypto(k)

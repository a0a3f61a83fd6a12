"""Read-write semaphores on one CPU (kernel/locking/rwsem.c): ``count`` holds the writer
bit (RWSEM_WRITER_LOCKED) or the readers (RWSEM_READER_BIAS each); nothing contends, so
lock and unlock only keep the count as the kernel would (module code and lockdep-free
inline checks such as rwsem_is_locked() read it)."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import init_list_head

RWSEM_WRITER_LOCKED = 1
RWSEM_READER_BIAS = 1 << 8


def _count(k: Kernel, sem: int) -> int:
    return sem + k.layouts.offsetof("rw_semaphore", "count")


def _add(k: Kernel, sem: int, delta: int) -> None:
    at = _count(k, sem)
    k.mem.write_u64(at, (k.mem.read_u64(at) + delta) & ((1 << 64) - 1))


@kfunc()
def __init_rwsem(k: Kernel, sem: int, name: int, key: int) -> None:
    k.mem.write_u64(_count(k, sem), 0)
    k.mem.write_u64(sem + k.layouts.offsetof("rw_semaphore", "owner"), 0)
    init_list_head(k, sem + k.layouts.offsetof("rw_semaphore", "wait_list"))


@kfunc("down_write_killable")
def down_write(k: Kernel, sem: int) -> int:
    _add(k, sem, RWSEM_WRITER_LOCKED)
    return 0


@kfunc()
def down_write_trylock(k: Kernel, sem: int) -> int:
    _add(k, sem, RWSEM_WRITER_LOCKED)
    return 1


@kfunc()
def up_write(k: Kernel, sem: int) -> None:
    _add(k, sem, -RWSEM_WRITER_LOCKED)


@kfunc("down_read_killable", "down_read_interruptible")
def down_read(k: Kernel, sem: int) -> int:
    _add(k, sem, RWSEM_READER_BIAS)
    return 0


@kfunc()
def down_read_trylock(k: Kernel, sem: int) -> int:
    _add(k, sem, RWSEM_READER_BIAS)
    return 1


@kfunc()
def up_read(k: Kernel, sem: int) -> None:
    _add(k, sem, -RWSEM_READER_BIAS)


@kfunc()
def downgrade_write(k: Kernel, sem: int) -> None:
    _add(k, sem, RWSEM_READER_BIAS - RWSEM_WRITER_LOCKED)

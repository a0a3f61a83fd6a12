"""The registry of kernel functions and data, and the kernel a handler runs in.

A kernel function is a Python function named as the kernel names it, registered with
:func:`kfunc`; its first parameter is the :class:`Kernel`, the others are the C
arguments (read from the registers and the stack by the CPU)::

    @kfunc()
    def kfree(k: Kernel, objp: int) -> None:
        '''mm/slab_common.c'''

It returns the C return value (an int, None for void).  Kernel data symbols (``jiffies``,
``kmalloc_caches``, per-CPU ``current_task``) are registered with :func:`kdata` and an
initialiser that fills their memory; :func:`native` registers a few bytes of real machine
code (return thunks).  Handlers know nothing of the emulator beyond :class:`Cpu`: the
arguments, calling back into module code, jumping (thunks).

Subsystem state that must persist between processes (the slab allocator's objects, the
clock) is a class registered with :func:`substate`, kept by :meth:`Kernel.sub`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from lkm.kernel.exec.memory import AddressSpace
from lkm.kernel.printk import Printk

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")


class ArgSource(Protocol):
    def next(self) -> int: ...


class CallFrame(Protocol):
    @property
    def caller(self) -> int: ...

    @property
    def addr(self) -> int: ...


class Cpu(Protocol):
    """What a kernel function sees of the CPU that called it."""

    def arg(self, i: int) -> int: ...

    def args(self, first: int = 0) -> ArgSource: ...

    def call(self, addr: int, args: Sequence[int] = (), budget: int | None = None) -> int: ...

    def jump(self, addr: int) -> None: ...

    def reg(self, name: str) -> int: ...

    @property
    def frame(self) -> CallFrame: ...


class Layouts(Protocol):
    """Struct layouts of the running kernel (its BTF)."""

    def offsetof(self, struct_: int | str, path: str) -> int: ...

    def sizeof(self, t: int | str) -> int: ...

    def field(self, struct_: int | str, path: str) -> Any: ...

    def enum(self, name: str) -> dict[str, int]: ...

    def nested_members(self, struct_: str) -> list[tuple[str, int]]: ...


@dataclass(frozen=True)
class KFunc:
    name: str
    fn: Callable[..., int | None]
    nargs: int


@dataclass(frozen=True)
class KData:
    """A kernel data symbol: ``size`` bytes (or computed from the kernel), filled by
    ``init(k, address)``; ``percpu``: an offset in the per-CPU area (%gs-relative)."""

    name: str
    size: int | Callable[[Kernel], int]
    init: Callable[[Kernel, int], None] | None
    percpu: bool = False
    align: int = 8
    perm: str = "rw"


FUNCTIONS: dict[str, KFunc] = {}
DATA: dict[str, KData] = {}
DATA_ALIASES: dict[str, str] = {}  # another name for the same data (jiffies_64: jiffies)
NATIVE: dict[str, bytes] = {}
SUBSTATES: dict[str, type[Any]] = {}


def kfunc(*aliases: str) -> Callable[[F], F]:
    """Register a kernel function under its Python name and ``aliases`` (other kernel
    versions' names for the same function, e.g. 6.12's ``__kmalloc_noprof``)."""

    def deco(fn: F) -> F:
        n = fn.__code__.co_argcount - 1
        for name in (fn.__name__, *aliases):
            FUNCTIONS[name] = KFunc(name, fn, n)
        return fn

    return deco


def kdata(name: str, size: int | Callable[[Kernel], int], *, percpu: bool = False,
          align: int = 8, perm: str = "rw"
          ) -> Callable[[Callable[[Kernel, int], None]], Callable[[Kernel, int], None]]:
    """Register a kernel data symbol with the function that initialises it."""

    def deco(init: Callable[[Kernel, int], None]) -> Callable[[Kernel, int], None]:
        DATA[name] = KData(name, size, init, percpu, align, perm)
        return init

    return deco


def kdata_alias(name: str, target: str) -> None:
    """``name`` is the same object as the data symbol ``target`` (the linker script's
    ``jiffies = jiffies_64``)."""
    DATA_ALIASES[name] = target


def native(name: str, code: bytes) -> None:
    """A kernel function that is a few bytes of real code (position independent)."""
    NATIVE[name] = code


def substate(name: str) -> Callable[[type[S]], type[S]]:
    """Register a persistent state class (``to_json()`` / ``from_json(d)``)."""

    def deco(cls: type[S]) -> type[S]:
        SUBSTATES[name] = cls
        cls._substate_name = name  # type: ignore[attr-defined]
        return cls

    return deco


class KernelOops(Exception):
    """A kernel API function detected something that kills the caller in the kernel; the
    runtime renders it (the payload is an ExecFault)."""


class Kernel:
    """The kernel as kernel functions see it: memory, the CPU, the log, the symbols.

    ``hooks`` is the runtime behind it (exec/runtime.py): symbol lookups, modules, taints;
    typed loosely so that this file needs nothing from the emulator.
    """

    def __init__(self, mem: AddressSpace, runtime: Any) -> None:
        self.mem = mem
        self.rt = runtime
        self.cpu: Cpu = runtime.cpu_proxy
        self._subs: dict[str, Any] = {}
        self._saved: dict[str, Any] = {}

    # -- the runtime's services ------------------------------------------------------------
    @property
    def layouts(self) -> Layouts:
        return self.rt.layouts  # type: ignore[no-any-return]

    @property
    def version(self) -> tuple[int, int, int]:
        return self.rt.profile.version  # type: ignore[no-any-return]

    @property
    def log(self) -> Printk:
        return self.rt.printk  # type: ignore[no-any-return]

    def config(self, option: str) -> bool:
        return bool(self.rt.profile.enabled(option))

    def symbol(self, name: str) -> int:
        """The address of a kernel symbol (stub, native code or data)."""
        return int(self.rt.symbol_address(name))

    def lookup(self, addr: int) -> tuple[str, int, int, str | None] | None:
        """kallsyms: (name, offset, size, module or None) of the symbol holding ``addr``."""
        return self.rt.kallsyms(addr)  # type: ignore[no-any-return]

    def site(self, addr: int) -> str:
        """``func+0x24/0x80 [mod]``-style name of a code address."""
        return str(self.rt.symbolize(addr))

    def add_taint(self, flag: int) -> None:
        self.rt.add_taint(flag)

    @property
    def caller(self) -> int:
        """The return address of the kernel function in progress."""
        return self.cpu.frame.caller

    # -- persistent subsystem state --------------------------------------------------------
    def sub(self, cls: type[S]) -> S:
        name: str = cls._substate_name  # type: ignore[attr-defined]
        got = self._subs.get(name)
        if got is None:
            saved = self._saved.pop(name, None)
            c: Any = cls
            got = c.from_json(self, saved) if saved is not None else c(self)
            self._subs[name] = got
        return got  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        out = dict(self._saved)
        for name, obj in self._subs.items():
            out[name] = obj.to_json()
        return out

    def load_json(self, d: dict[str, Any]) -> None:
        self._subs = {}
        self._saved = dict(d)

    # -- memory helpers in C's words -------------------------------------------------------
    def cstr(self, addr: int, limit: int = 1 << 20) -> bytes:
        return self.mem.read_cstr(addr, limit)

    def text(self, addr: int, limit: int = 1 << 20) -> str:
        return self.mem.read_cstr(addr, limit).decode("utf-8", "surrogateescape")


def signed(v: int, bits: int = 64) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def err(e: int) -> int:
    """-errno as the u64 register value a function returns."""
    return (-e) & 0xFFFFFFFFFFFFFFFF


def ERR_PTR(e: int) -> int:
    return err(e)


def IS_ERR_VALUE(v: int) -> bool:
    return (v & 0xFFFFFFFFFFFFFFFF) >= 0xFFFFFFFFFFFFF001

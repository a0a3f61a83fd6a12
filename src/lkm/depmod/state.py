"""What one depmod run knows: its options, the modules of the tree, the symbols.

:class:`DepmodModule` is kmod's ``struct mod`` (tools/depmod.c): one module file of the
tree with its place in the numbering and its dependencies.  :class:`DepmodState` holds
the run; the files beside this one answer one question each over it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lkm.config.depmod import DepmodConfig, LogFn
from lkm.config.lines import read_file
from lkm.depmod.parallel import default_jobs
from lkm.depmod.read import ModuleData
from lkm.logprio import LOG_WARNING


def enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class DepmodModule:
    """One module file of the tree (kmod's struct mod in tools/depmod.c).

    ``idx`` is its number in module order (modules.order, then libkmod's hash order),
    the priority of its index entries; ``dep_sort_idx`` its place in the topological
    order; ``deps`` the modules it needs directly, ``users`` how many need it.
    """

    __slots__ = ("baselen", "data", "dep_sort_idx", "deps", "idx", "info", "modname", "path",
                 "relpath", "sort_idx", "uncrelpath", "users")

    def __init__(self, path: str, modname: str, dirname: str) -> None:
        self.path = path
        self.modname = modname
        self.baselen = path.rfind("/")
        n = len(dirname)
        if path.startswith(dirname) and path[n:n + 1] == "/":
            self.relpath: str | None = path[n + 1:]
            cut = self.baselen - (n + 1) + len(modname) + 1 + 3
            self.uncrelpath: str | None = self.relpath[:cut]
        else:
            self.relpath = None
            self.uncrelpath = None
        self.sort_idx = 1
        self.dep_sort_idx = 0x7FFFFFFF
        self.idx = 0
        self.users = 0
        self.deps: list[DepmodModule] = []
        self.data: ModuleData | None = None
        self.info: list[tuple[str, str]] = []

    @property
    def out_path(self) -> str:
        """The path written in the outputs: relative to the module dir when inside it."""
        return self.relpath if self.relpath is not None else self.path

    def __repr__(self) -> str:
        return f"DepmodModule({self.modname!r}, {self.path!r})"


class DepmodState:
    """One depmod run over ``dirname`` (``<basedir>/lib/modules/<kversion>``).

    Messages (kmod's text, with a syslog priority) go to ``log``, or are collected in
    :attr:`messages` when none is given; ``-v`` lines go to ``show``.
    """

    def __init__(self, dirname: str, kversion: str, config: DepmodConfig | None = None, *,
                 sym_prefix: str = "", check_symvers: bool = False,
                 print_unknown: bool = False, warn_dups: bool = False, verbose: bool = False,
                 log: LogFn | None = None, show: Callable[[str], None] | None = None,
                 jobs: int | None = None) -> None:
        self.dirname = dirname
        self.kversion = kversion
        self.cfg = config or DepmodConfig(searches=["updates"])
        self.sym_prefix = sym_prefix
        self.check_symvers = check_symvers
        self.print_unknown = print_unknown
        self.warn_dups = warn_dups
        self.verbose = verbose
        self.messages: list[tuple[int, str]] = []
        self.logger: LogFn = log or (lambda prio, msg: self.messages.append((prio, msg)))
        self._show = show or (lambda msg: None)
        self.jobs = jobs if jobs is not None else default_jobs()
        self.modules: list[DepmodModule] = []  # in module order, once numbered
        self.by_name: dict[str, DepmodModule] = {}  # as found
        self.vmlinux_symbols: dict[str, int] = {}  # name -> CRC, from -E or -F
        self.owner: dict[str, DepmodModule] = {}  # module exports: the last in order wins
        self.export_crc: dict[str, int] = {}  # with -E
        self.dep_lines_cache: list[str] | None = None
        self.sorted_symbols_cache: list[tuple[str, DepmodModule]] | None = None
        self.built = False  # modules numbered
        self.irregular: set[str] = set()  # operands that are not regular files

    def log(self, prio: int, msg: str) -> None:
        self.logger(prio, msg)

    def show(self, msg: str) -> None:
        self._show(msg)

    def read_input(self, name: str) -> bytes | None:
        """A file of the module directory, or None with kmod's warning."""
        try:
            fd = os.open(self.dirname, os.O_RDONLY)
        except OSError as e:
            self.log(LOG_WARNING, f"could not open directory {self.dirname}: {e.strerror}\n")
            return None
        try:
            return read_file(name, fd)
        except OSError as e:
            self.log(LOG_WARNING, f"could not open {name} at {self.dirname}: {e.strerror}\n")
            return None
        finally:
            os.close(fd)

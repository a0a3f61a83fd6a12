"""One depmod run, step by step (:class:`Depmod`) or in one call (:func:`run`), in the
order of kmod 30's tools/depmod.c main(): vmlinux's symbols, depmod.d, the module
search, reading and resolving the modules, then the outputs."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO

from lkm.config.depmod import DepmodConfig, LogFn
from lkm.depmod.errors import DepmodError
from lkm.depmod.order import build_array as _build_array
from lkm.depmod.output import dep_lines as _dep_lines
from lkm.depmod.output import output as _output
from lkm.depmod.output import show_text as _show_text
from lkm.depmod.parallel import read_all
from lkm.depmod.resolve import load_symvers as _load_symvers
from lkm.depmod.resolve import load_system_map as _load_system_map
from lkm.depmod.resolve import resolve as _resolve
from lkm.depmod.search import add_paths as _add_paths
from lkm.depmod.search import search as _search
from lkm.depmod.state import DepmodState
from lkm.depmod.uptodate import depfile_up_to_date
from lkm.depmod.write import write as _write
from lkm.index import Layout
from lkm.logprio import LOG_CRIT, LOG_WARNING


class Depmod(DepmodState):
    """One depmod run over ``dirname`` (``<basedir>/lib/modules/<kversion>``).

    The steps, as :func:`run` takes them: :meth:`load_symvers` or
    :meth:`load_system_map` (optional), :meth:`search` (after setting :attr:`cfg`) or
    :meth:`add_paths`, :meth:`build_array` (optional: :meth:`load` does it while the
    readers start), :meth:`load`, then :meth:`write` or :meth:`show_text`.
    """

    def load_symvers(self, filename: str) -> None:
        """Add vmlinux's symbols and CRCs from a Module.symvers (OSError if unreadable)."""
        _load_symvers(self, filename)

    def load_system_map(self, filename: str) -> None:
        """Add vmlinux's exports from a System.map (OSError if unreadable)."""
        _load_system_map(self, filename)

    def search(self) -> None:
        """Find the modules of the module directory and of the ``external`` directories
        (DepmodError if the module directory cannot be read)."""
        _search(self)

    def add_paths(self, paths: Iterable[str]) -> None:
        """Use exactly these module files (absolute paths), as ``depmod VERSION FILE...``."""
        _add_paths(self, paths)

    def build_array(self) -> None:
        """Number the modules: modules.order first, then libkmod's hash-table order."""
        _build_array(self)

    def load(self) -> None:
        """Read every module, resolve symbols and dependencies, sort topologically.

        Raises DependencyCycleError (after logging each cycle) when there are cycles.
        """
        detail = self.check_symvers or self.print_unknown
        skip = frozenset(self.irregular)
        if self.built:
            results = read_all([m.path for m in self.modules], detail, self.jobs, skip=skip)
        else:  # number the modules while the reader processes start
            found = list(self.by_name.values())
            got = read_all([m.path for m in found], detail, self.jobs, self.build_array, skip)
            by_mod = {id(m): r for m, r in zip(found, got, strict=True)}
            results = [by_mod[id(m)] for m in self.modules]
        _resolve(self, results)

    def dep_lines(self) -> list[str]:
        """modules.dep lines (without newline), in module order."""
        return _dep_lines(self)

    def output(self, name: str, layout: Layout = "postorder") -> bytes:
        """The content of output file ``name`` (one of :data:`OUTPUTS`)."""
        return _output(self, name, layout)

    def show_text(self) -> Iterator[bytes]:
        """What ``depmod -n`` prints: the text outputs in kmod's order."""
        return _show_text(self)

    def write(self, outdir: str | None = None, layout: Layout = "postorder",
              create: bool = False) -> None:
        """Write every output into ``outdir`` (default: the module directory, created
        first if ``create``), each renamed in place once complete."""
        _write(self, outdir, layout, create)


def load_config(kversion: str, paths: Sequence[str] | None, log: LogFn) -> DepmodConfig:
    """Read depmod.d (``paths`` or kmod's default directories) for kernel ``kversion``."""
    return DepmodConfig.load(kversion, paths, log)


def run(dirname: str, kversion: str, *, config_paths: Sequence[str] | None = None,
        config: DepmodConfig | None = None, modules: Sequence[str] | None = None,
        outdir: str | None = None, create_outdir: bool = False,
        layout: Layout = "postorder", symvers: str | None = None,
        system_map: str | None = None, sym_prefix: str = "", print_unknown: bool = False,
        warn_dups: bool = False, quick: bool = False, show: BinaryIO | None = None,
        verbose: Callable[[str], None] | None = None, log: LogFn | None = None,
        jobs: int | None = None) -> Depmod | None:
    """Run depmod over the module directory ``dirname`` for kernel ``kversion``, as
    kmod 30's ``depmod`` does, and write its files.

    :param dirname: the module directory, ``<basedir>/lib/modules/<kversion>``.
    :param kversion: the kernel release (depmod.d's ``override``/``external`` match it).
    :param config_paths: depmod.d directories or files (``-C``); None: kmod's defaults
        (/etc/depmod.d, /run/depmod.d, /usr/local/lib/depmod.d, /lib/depmod.d).
    :param config: depmod.d settings to use instead of reading ``config_paths``.
    :param modules: index exactly these module files (absolute paths, ``depmod VERSION
        FILE...``) instead of searching the tree (None or empty: search).
    :param outdir: where to write the files (``-o``); None: ``dirname``.
    :param create_outdir: create ``outdir`` first if missing.
    :param layout: the indexes' layout: kmod 30's ``"postorder"`` or kmod 34's
        ``"preorder"``.
    :param symvers: a Module.symvers (``-E``): vmlinux's symbols with their CRCs,
        checked against the modules' with ``print_unknown``.
    :param system_map: a System.map (``-F``), used when ``symvers`` is None.
    :param sym_prefix: the architecture's symbol prefix (``-P``).
    :param print_unknown: report unknown symbols and CRC mismatches (``-e``; needs
        ``symvers`` or ``system_map``, else a warning and no report).
    :param warn_dups: report duplicate index entries (``-w``).
    :param quick: ``-A``: do nothing when no module file is newer than modules.dep,
        else search the whole tree (``modules`` is then ignored); with ``show``, nothing
        is done at all.
    :param show: ``-n``: write the text files, in kmod's order, to this stream instead
        of writing any file.
    :param verbose: ``-v``: each dependency found is handed to it as kmod's line
        (``<path> needs "<symbol>": <path>\\n``).
    :param log: receives every message as ``log(priority, text)`` (kmod's text,
        lkm.logprio's priorities); None: they are collected in the result's
        :attr:`~DepmodState.messages`.
    :param jobs: processes reading modules; None: the CPUs available, at most 8.
    :returns: the finished run (its :attr:`~DepmodState.modules` in module order, each
        with its dependencies), or None when ``quick`` found nothing to do.
    :raises DepmodError: when depmod stops (kmod's message and priority: an unreadable
        symbol file or module directory, a bad module operand, an unwritable output,
        a non-ASCII index entry); messages logged before it stay logged.
    :raises DependencyCycleError: when modules depend on each other in a cycle (each
        cycle logged first); nothing is written.
    """
    if quick and show is not None:
        return None
    d = Depmod(dirname, kversion, config, sym_prefix=sym_prefix,
               check_symvers=symvers is not None, print_unknown=print_unknown,
               warn_dups=warn_dups, verbose=verbose is not None, log=log, show=verbose,
               jobs=jobs)
    if quick:
        if depfile_up_to_date(dirname, d.log) == 1:
            return None
        modules = None
    for name, load in ((symvers, d.load_symvers), (system_map, d.load_system_map)):
        if name is not None:
            try:
                load(name)
            except OSError as e:
                raise DepmodError(f"could not load {name}: {e.strerror}\n", LOG_CRIT) from e
            break
    else:
        if print_unknown:
            d.log(LOG_WARNING, "-e needs -E or -F\n")
            d.print_unknown = False
    if not modules:
        if config is None:
            d.cfg = DepmodConfig.load(kversion, config_paths, d.log)
        try:
            d.search()
        except DepmodError as e:
            d.log(e.priority, str(e))
            reason = str(e).rstrip("\n").rsplit(": ", 1)[-1]
            raise DepmodError(f"could not search modules: {reason}\n", LOG_CRIT) from e
    else:
        d.add_paths(modules)
    d.load()
    if show is not None:
        for chunk in d.show_text():
            show.write(chunk)
    else:
        d.write(outdir, layout, create=create_outdir)
    return d


def is_version_number(s: str) -> bool:
    """Whether depmod takes ``s`` as a kernel version: sscanf(s, "%u.%u") == 2."""
    return re.match(r"\s*[+-]?\d+\.\s*[+-]?\d+", s) is not None


def default_kversion() -> str:
    """The running kernel's release (uname -r), depmod's default version."""
    return os.uname().release

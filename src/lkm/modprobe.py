"""modprobe's resolution: the lookup, the probe list, the remove plan.

modprobe is libkmod plus a little of its own (tools/modprobe.c):

- which modules a name stands for: :meth:`lkm.kmod.KmodContext.lookup`, whose order
  is :data:`lkm.kmod.LOOKUP_ORDER`;
- what loading one loads, and loading it: :func:`lkm.kmod.probe.probe_list` and
  :func:`lkm.kmod.probe.probe_insert_module` (kmod_module_probe_insert_module);
- modprobe's own loop over its arguments, with its messages: :class:`Prober`
  (tools/modprobe.c insmod()) and :class:`Remover` (``modprobe -r``, rmmod_do_*),
  and how it joins the module options given after a name (:func:`options_from_array`).

Effects go through callbacks, so the library never prints: ``show(text)`` gets the
lines modprobe prints with ``-n -v``/``-D``, ``note(text)`` modprobe's LOG() (FATAL,
or WARNING with ``-a``), ``error(text)`` its ERR().  Functions return 0 or a negative
errno as libkmod does; callers map them to messages.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

from lkm.errors import InvalidAlias
from lkm.kmod import probe as P
from lkm.kmod.commands import run_command
from lkm.kmod.context import KmodContext
from lkm.kmod.module import BUILTIN, REMOVE_FORCE, REMOVE_NOLOG, KmodModule

TextFn = Callable[[str], None]


def _now_msec() -> int:
    return time.monotonic_ns() // 1_000_000


def _drop(text: str) -> None:
    pass


class Options:
    """The switches of modprobe's plans, as its command line sets them (all off by
    default; set the attributes).

    :ivar dry_run: ``-n``: show, do not load or remove.
    :ivar force: ``-f``: both forces below, and delete_module with O_TRUNC.
    :ivar force_vermagic: ``--force-vermagic``.
    :ivar force_modversion: ``--force-modversion``.
    :ivar ignore_commands: ``-i``: no install/remove commands (and for ``-r`` no softdeps).
    :ivar ignore_loaded: ``-D``: do not ask whether a module is loaded.
    :ivar use_blacklist: ``-b``: the blacklist applies to names too, not only aliases.
    :ivar first_time: ``--first-time``: loading a loaded module, or removing one not
        loaded, is an error.
    :ivar remove_holders: ``--remove-holders``: ``-r`` removes the holders first.
    :ivar wait_msec: ``-w``: ``-r`` retries a module in use for that long.
    """

    dry_run = force = force_vermagic = force_modversion = False
    ignore_commands = ignore_loaded = use_blacklist = first_time = remove_holders = False
    wait_msec = 0

    def probe_flags(self) -> int:
        """The PROBE_* flags of kmod_module_probe_insert_module for these switches."""
        return (P.PROBE_APPLY_BLACKLIST_ALIAS_ONLY
                | (P.PROBE_FORCE_VERMAGIC if self.force or self.force_vermagic else 0)
                | (P.PROBE_FORCE_MODVERSION if self.force or self.force_modversion else 0)
                | (P.PROBE_IGNORE_COMMAND if self.ignore_commands else 0)
                | (P.PROBE_IGNORE_LOADED if self.ignore_loaded else 0)
                | (P.PROBE_DRY_RUN if self.dry_run else 0)
                | (P.PROBE_APPLY_BLACKLIST if self.use_blacklist else 0)
                | (P.PROBE_FAIL_ON_LOADED if self.first_time else 0))


def options_from_array(args: list[str]) -> str | None:
    """The module options given after the module name (tools/modprobe.c
    options_from_array): joined by spaces, a ``key=value with spaces`` not already
    quoted becoming ``key="value with spaces"``; None when there are none.

    :param args: the name and the options after it.
    """
    if len(args) < 2:
        return None
    parts = []
    for a in args[1:]:
        key, eq, value = a.partition("=")
        quote = eq and value[:1] not in ('"', "'") and " " in value
        parts.append(f'{key}="{value}"' if quote else a)
    return " ".join(parts)


class Prober:
    """``modprobe NAME...``: each name looked up, each module found probed
    (kmod_module_probe_insert_module), failures reported as modprobe reports them.

    :param ctx: the context the names are looked up in.
    :param options: the switches (:class:`Options`; default: none).
    :param show: receives the ``insmod``/``install``/``builtin`` lines (None: not shown).
    :param note: receives modprobe's LOG() messages ("Module X not found ...").
    :param error: receives modprobe's ERR() messages ("could not insert ...").
    """

    def __init__(self, ctx: KmodContext, options: Options | None = None, *,
                 show: TextFn | None = None, note: TextFn | None = None,
                 error: TextFn | None = None) -> None:
        self.ctx = ctx
        self.flags = (options or Options()).probe_flags()
        self.show = show
        self.note = note or _drop
        self.error = error or _drop

    def probe_names(self, names: list[str], extra_options: str | None = None) -> int:
        """:meth:`probe_name` for each name: 0, or the last negative errno."""
        ctx, flags, show, error = self.ctx, self.flags, self.show, self.error
        result = 0
        for alias in names:
            ctx.release()
            try:
                found = ctx.lookup(alias)
            except InvalidAlias:
                found = []
            if not found:
                self.note(f"Module {alias} not found in directory {ctx.dirname}\n")
                result = -errno.ENOENT
                continue
            err = 0
            for mod in found:
                err = P.probe_insert_module(mod, flags, extra_options, show)
                if err >= 0:
                    err = 0
                elif err == -errno.EEXIST:
                    error(f"could not insert '{mod.name}': Module already in kernel\n")
                elif err == -errno.ENOENT:
                    error(f"could not insert '{mod.name}': Unknown symbol in module, "
                          "or unknown parameter (see dmesg)\n")
                else:
                    error(f"could not insert '{mod.name}': {os.strerror(-err)}\n")
            if err < 0:
                result = err
        return result

    def lookup(self, alias: str) -> list[KmodModule]:
        """The modules ``alias`` names; [] with "not found" noted when none."""
        self.ctx.release()
        try:
            found = self.ctx.lookup(alias)
        except InvalidAlias:
            found = []
        if not found:
            self.note(f"Module {alias} not found in directory {self.ctx.dirname}\n")
        return found

    def probe_name(self, alias: str, extra_options: str | None = None) -> int:
        """Load what ``alias`` names.

        :param alias: a module name or alias, looked up as :meth:`KmodContext.lookup`.
        :param extra_options: options for the module itself (:func:`options_from_array`).
        :returns: 0 or the negative errno of the last module that failed (-ENOENT when
            nothing was found); a blacklisted module counts as done.
        """
        return self.probe_names([alias], extra_options)


class Remover:
    """``modprobe -r``: the remove plan of kmod's modprobe (rmmod_do_module).

    For each module: its post-softdeps (reverse order), its holders with
    ``remove_holders``, a refcount check, the module itself (``rmmod`` or its
    remove command), the dependencies left unused, its pre-softdeps.

    :param ctx: the context the names are looked up in.
    :param options: the switches (:class:`Options`: dry_run, force, ignore_commands,
        ignore_loaded, first_time, remove_holders, wait_msec).
    :param show: receives ``rmmod NAME`` / ``remove CMD`` lines.
    :param note: receives modprobe's LOG() messages.
    :param error: receives modprobe's ERR() messages.
    """

    def __init__(self, ctx: KmodContext, options: Options | None = None, *,
                 show: TextFn | None = None, note: TextFn | None = None,
                 error: TextFn | None = None) -> None:
        o = options or Options()
        self.ctx = ctx
        self.dry_run = o.dry_run
        self.force = o.force
        self.ignore_commands = o.ignore_commands
        self.ignore_loaded = o.ignore_loaded
        self.first_time = o.first_time
        self.remove_holders = o.remove_holders
        self.wait_msec = o.wait_msec
        self.show = show or _drop
        self.note = note or _drop
        self.error = error or _drop

    def remove_names(self, names: list[str]) -> int:
        """:meth:`remove_name` for each name: 0, or the last negative errno."""
        err = 0
        for name in names:
            self.ctx.release()
            r = self.remove_name(name, self.remove_holders)
            if r < 0:
                err = r
        return err

    def remove_name(self, alias: str, remove_holders: bool = False) -> int:
        """Remove what ``alias`` names (modprobe -r ALIAS).

        :param alias: a module name or alias, looked up as :meth:`KmodContext.lookup`.
        :param remove_holders: ``--remove-holders``: remove the modules holding it first.
        :returns: 0 or a negative errno (-ENOENT: nothing found, noted).
        """
        from lkm.errors import InvalidAlias

        try:
            found = self.ctx.lookup(alias)
        except InvalidAlias:
            return -errno.EINVAL
        err = 0
        if not found:
            self.note(f"Module {alias} not found.\n")
            err = -errno.ENOENT
        for mod in found:
            err = self.remove_module(mod, remove_holders, False)
            if err < 0:
                break
        return err

    def _remove_list(self, mods: list[KmodModule], stop_on_errors: bool) -> int:
        for m in reversed(mods):
            r = self.remove_module(m, False, True)
            if r < 0 and stop_on_errors:
                return r
        return 0

    def remove_module(self, mod: KmodModule, remove_holders: bool, ignore_builtin: bool) -> int:
        """rmmod_do_module: remove ``mod`` and what it leaves unused; 0 or -errno."""
        pre: list[KmodModule] = []
        post: list[KmodModule] = []
        cmd = None
        if not self.ignore_commands:
            pre, post = mod.softdeps()
            cmd = mod.remove_command()
        if cmd is None and not self.ignore_loaded:
            state = mod.initstate()
            if state < 0:
                if self.first_time:
                    self.note(f"Module {mod.name} is not in kernel.\n")
                    return -errno.ENOENT
                return 0
            if state == BUILTIN:
                if ignore_builtin:
                    return 0
                self.note(f"Module {mod.name} is builtin.\n")
                return -errno.ENOENT
        self._remove_list(post, False)
        if remove_holders:
            err = self._remove_list(mod.holders(), True)
            if err < 0:
                return err
        if cmd is None and not self.ignore_loaded and not self.wait_msec:
            usage = mod.refcnt()
            if usage > 0:
                self.note(f"Module {mod.name} is in use.\n")
                return -errno.EBUSY
        err = self.rmmod(mod) if cmd is None else self.run_remove(mod, cmd)
        if err < 0:
            return err
        if cmd is None:
            for dep in mod.dependencies():
                if dep.refcnt() == 0:
                    self.rmmod(dep)
        self._remove_list(pre, False)
        return err

    def rmmod(self, mod: KmodModule) -> int:
        """One delete_module, shown as ``rmmod NAME``; 0 or -errno.

        With ``wait_msec``, a module still in use (EAGAIN) is retried with kmod's
        exponential backoff until the time is up -- and then, as in kmod 30, the
        removal counts as done.
        """
        self.show(f"rmmod {mod.name}\n")
        if self.dry_run:
            return 0
        flags = (REMOVE_FORCE if self.force else 0) | (REMOVE_NOLOG if self.wait_msec else 0)
        t0 = tend = interval = 0
        while True:
            err = mod.remove(flags)
            if err != -errno.EAGAIN or not self.wait_msec:
                break
            if not t0:
                t0 = _now_msec()
                tend = t0 + self.wait_msec
                interval = 1
            # shared/util.c get_backoff_delta_msec: double, but never past the end
            now = _now_msec()
            interval <<= 1
            while interval and now + interval > tend:
                interval >>= 1
            if not interval and tend > now:
                interval = tend - now
            time.sleep(max(0.0, (now + interval - _now_msec()) / 1000))
            err = 0
            if not interval:
                break
        if err < 0 and self.wait_msec:
            self.error(f"could not remove '{mod.name}': {os.strerror(-err)}\n")
        return err

    def run_remove(self, mod: KmodModule, command: str) -> int:
        """A ``remove`` command, shown as ``remove CMD``; 0 or a negative status."""
        command = command.replace("$CMDLINE_OPTS", "")
        self.show(f"remove {command}\n")
        if self.dry_run:
            return 0
        rc = run_command(command, mod.name, self.ctx.before_command)
        if rc is None or rc:
            self.note(f"Error running remove command for {mod.name}\n")
            return -rc if rc else -1
        return 0


__all__ = ["Options", "Prober", "Remover", "options_from_array"]

"""kmod_module_probe_insert_module (libkmod-module.c): load a module with everything it needs.

The probe list of a module (:func:`probe_list`) is each dependency (deepest first)
and then the module itself, each preceded by its pre-softdeps and followed by its
post-softdeps (recursively).  Only the target and modules reached through softdeps
are marked visited, so a module can appear twice.  A module with softdeps ignores
its install command.  :func:`probe_insert_module` then loads the list in order
(or runs install commands, or only shows what it would do).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from lkm.kmod.commands import run_command
from lkm.kmod.log import libkmod_pos
from lkm.kmod.module import KmodModule
from lkm.logprio import LOG_ERR

# enum kmod_probe
PROBE_FORCE_VERMAGIC = 0x00001
PROBE_FORCE_MODVERSION = 0x00002
PROBE_IGNORE_COMMAND = 0x00004
PROBE_IGNORE_LOADED = 0x00008
PROBE_DRY_RUN = 0x00010
PROBE_FAIL_ON_LOADED = 0x00020
PROBE_APPLY_BLACKLIST_ALL = 0x10000
PROBE_APPLY_BLACKLIST = 0x20000
PROBE_APPLY_BLACKLIST_ALIAS_ONLY = 0x40000

ShowFn = Callable[[str], None]
"""Receives what ``modprobe -n -v``/``-D`` prints (``insmod <path> <opts>``,
``install <cmd> <opts>``, ``builtin <name>``), whole lines."""

_SHOW_ONLY = PROBE_IGNORE_LOADED | PROBE_DRY_RUN


def probe_list(mod: KmodModule, ignorecmd: bool = False) -> list[KmodModule]:
    """What loading ``mod`` loads, in order (kmod_module_get_probe_list).

    :param mod: the module to load.
    :param ignorecmd: PROBE_IGNORE_COMMAND: ``mod`` itself goes in without its softdeps.
    :returns: each dependency (deepest first) and then ``mod``, each preceded by its
        pre-softdeps and followed by its post-softdeps.
    """
    ctx = mod.ctx
    ctx.generation += 1  # every module becomes unvisited and not required
    out: list[KmodModule] = []
    _probe_list(mod, True, ignorecmd, out)
    return out


def _probe_list(mod: KmodModule, required: bool, ignorecmd: bool,
                out: list[KmodModule]) -> None:
    ctx = mod.ctx
    gen = ctx.generation
    if mod.visited == gen:
        return
    mod.visited = gen
    deps = mod._deps
    if deps is None or not mod._dep_init:
        deps = mod.dependencies()
    if required:
        mod.required = gen
        for d in deps:
            d.required = gen
    softdep = ctx.softdep
    for d in deps:
        if softdep(d.name) is None:
            out.append(d)
            d.ignorecmd = False
        else:
            _fill_softdep(d, out)
    if ignorecmd:
        out.append(mod)
        mod.ignorecmd = True
    else:
        _fill_softdep(mod, out)


def _fill_softdep(mod: KmodModule, out: list[KmodModule]) -> None:
    if mod.ctx.softdep(mod.name) is None:
        out.append(mod)
        mod.ignorecmd = False
        return
    pre, post = mod.softdeps()
    for m in pre:
        _probe_list(m, False, False, out)
    out.append(mod)
    mod.ignorecmd = bool(pre or post)
    for m in post:
        _probe_list(m, False, False, out)


def probe_insert_module(mod: KmodModule, flags: int, extra_options: str | None = None,
                        show: ShowFn | None = None) -> int:
    """kmod_module_probe_insert_module: load ``mod`` with its probe list.

    :param mod: the module to load.
    :param flags: PROBE_* flags.
    :param extra_options: options for ``mod`` itself (after the configured ones).
    :param show: receives the lines ``-n -v``/``-D`` print (None: nothing shown).
    :returns: 0; a positive PROBE_APPLY_BLACKLIST* flag when a blacklist stopped it;
        or a negative errno (-EEXIST: already loaded, with PROBE_FAIL_ON_LOADED).
    """
    ctx = mod.ctx
    if not flags & PROBE_IGNORE_LOADED and mod.is_inkernel():
        return -errno.EEXIST if flags & PROBE_FAIL_ON_LOADED else 0
    if mod.alias is not None and flags & PROBE_APPLY_BLACKLIST_ALIAS_ONLY:
        why = PROBE_APPLY_BLACKLIST_ALIAS_ONLY
    else:
        why = flags & PROBE_APPLY_BLACKLIST_ALL or flags & PROBE_APPLY_BLACKLIST
    if why and ctx.is_blacklisted(mod):
        return why
    if (flags & _SHOW_ONLY) == _SHOW_ONLY and not flags & PROBE_APPLY_BLACKLIST_ALL:
        text = _show_depends(mod, bool(flags & PROBE_IGNORE_COMMAND), extra_options)
        if text is not None:
            if show is not None:
                show(text)
            return 0
    todo = probe_list(mod, bool(flags & PROBE_IGNORE_COMMAND))
    if flags & PROBE_APPLY_BLACKLIST_ALL:
        todo = [m for m in todo if not ctx.is_blacklisted(m)]
        if not todo:
            return PROBE_APPLY_BLACKLIST_ALL
    err = 0
    check_loaded = not flags & PROBE_IGNORE_LOADED
    dry_run = flags & PROBE_DRY_RUN
    gen = ctx.generation
    lines: list[str] | None = [] if show is not None and dry_run else None
    for m in todo:
        moptions = m.options()
        cmd = m.install_command()
        if check_loaded and m.is_inkernel():
            err = -errno.EEXIST
        else:
            xopt = extra_options if m is mod else None
            options = xopt if moptions is None else f"{moptions} {xopt or ''}"
            if cmd is not None and not m.ignorecmd:
                if show is not None:
                    line = f"install {cmd} {options or ''}\n"
                    if lines is not None:
                        lines.append(line)
                    else:
                        show(line)
                if not dry_run:
                    err = run_install(m, cmd, options)
            else:
                if show is not None:
                    path = m._path if m._path is not None else m.path()
                    if path is not None:
                        line = f"insmod {path} {options or ''}\n"
                    elif m.is_builtin():
                        line = f"builtin {m.name}\n"
                    else:
                        line = ""
                    if lines is not None:
                        lines.append(line)
                    elif line:
                        show(line)
                if not dry_run:
                    err = m.insert(flags & (PROBE_FORCE_VERMAGIC | PROBE_FORCE_MODVERSION),
                                   options)
        if err == -errno.EEXIST and m is mod and flags & PROBE_FAIL_ON_LOADED:
            break
        if err == -errno.EEXIST or m.required != gen:
            err = 0
        elif err < 0:
            break
    if lines and show is not None:
        show("".join(lines))
    return err


def _show_depends(mod: KmodModule, ignorecmd: bool, extra_options: str | None) -> str | None:
    """What a dry run that ignores loaded modules prints (``-D``), computed without
    module handles when neither the module nor its dependencies have softdeps and
    every file is known (the result is the probe list's); None otherwise."""
    ctx = mod.ctx
    if not mod._dep_init:
        line = ctx.search_moddep(mod.name)
        if line is None:
            return None
        ctx.parse_depline(mod, line)
        if not mod._dep_init:
            return None
    softdep = ctx.softdep
    name = mod.name
    if mod._path is None or softdep(name) is not None:
        return None
    lines = ctx.dep_show_lines
    out = []
    for path, known in reversed(mod._depinfo or ()):
        text = lines.get(path)
        if text is None:
            if type(known) is not tuple:
                return None
            abspath, dname = known
            if softdep(dname) is not None:
                return None
            dep_options = ctx.config_options(dname)
            dep_options = "" if dep_options is None else f"{dep_options} "
            cmd = ctx.config_install(dname)
            text = (f"install {cmd} {dep_options}\n" if cmd is not None
                    else f"insmod {abspath} {dep_options}\n")
            lines[path] = text
        out.append(text)
    moptions = mod.options() if mod.alias is not None or mod._options is not False \
        else ctx._options_by_name.get(name)
    options = extra_options if moptions is None else f"{moptions} {extra_options or ''}"
    cmd = None if ignorecmd else mod.install_command()
    if cmd is not None:
        out.append(f"install {cmd} {options or ''}\n")
    else:
        out.append(f"insmod {mod._path} {options or ''}\n")
    return "".join(out)


def run_install(mod: KmodModule, command: str, options: str | None) -> int:
    """Run an install command (``$CMDLINE_OPTS`` replaced by the options) through the
    shell with MODPROBE_MODULE set (libkmod's command_do): 0 or -EINVAL."""
    cmd = command.replace("$CMDLINE_OPTS", options or "")
    rc = run_command(cmd, mod.name, mod.ctx.before_command)
    if rc is None:
        mod.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1041"), "command_do",
                    f"Could not run install command '{cmd}' for module {mod.name}: "
                    f"{os.strerror(errno.ENOENT)}\n")
        return -errno.EINVAL
    if rc:
        mod.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1047"), "command_do",
                    f"Error running install command '{cmd}' for module {mod.name}: "
                    f"retcode {rc}\n")
        return -errno.EINVAL
    return 0


__all__ = ["PROBE_APPLY_BLACKLIST", "PROBE_APPLY_BLACKLIST_ALIAS_ONLY",
           "PROBE_APPLY_BLACKLIST_ALL", "PROBE_DRY_RUN", "PROBE_FAIL_ON_LOADED",
           "PROBE_FORCE_MODVERSION", "PROBE_FORCE_VERMAGIC", "PROBE_IGNORE_COMMAND",
           "PROBE_IGNORE_LOADED", "ShowFn", "probe_insert_module", "probe_list", "run_install"]

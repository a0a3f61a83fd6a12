"""modprobe.d as libkmod 30 holds it (libkmod/libkmod-config.c): aliases, options,
install/remove commands, blacklists, softdeps, then the kernel command line's options.

The files are libkmod's conf_files_list: ``*.conf`` and ``*.alias`` of each directory
(a path given directly, ``-C file``, is read as is), ``<moddir>/modules.softdep`` sorted
among them by basename, the first directory holding a basename winning; dot-files and
sub-directories are left out.  Lines are read with :func:`lkm.config.lines.wrapped_lines`.
Text is handled as ``str`` decoded from UTF-8 with ``surrogateescape``, so every byte
survives to the output.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence

from lkm.config.kcmdline import kcmdline_options
from lkm.config.lines import wrapped_lines
from lkm.kmod.log import libkmod_pos as libkmod_pos  # lkm.config exports it
from lkm.logprio import LOG_ERR

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                 "/lib/modprobe.d")


# --------------------------------------------------------------------------- helpers


def underscores(s: str | None) -> str | None:
    """libkmod's ``underscores()`` (see :func:`lkm.kmod.names.underscores`); None if it fails."""
    if s is None:
        return None
    if "[" not in s and "]" not in s:
        return s.replace("-", "_")
    from lkm.errors import InvalidAlias
    from lkm.kmod.names import underscores as _underscores

    try:
        return _underscores(s)
    except InvalidAlias:
        return None


_TOKEN = re.compile(r"[^ \t]+")


def _strtok(s: str, pos: int) -> tuple[str | None, int]:
    """glibc ``strtok_r(…, "\\t ")`` from ``pos``: (token, position after its delimiter)."""
    m = _TOKEN.search(s, pos)
    if m is None:
        return None, len(s)
    return m.group(), min(m.end() + 1, len(s))


def _rest(s: str, pos: int) -> str | None:
    """``strtok_r(NULL, "\\0", …)``: the rest of the line verbatim, None if empty."""
    return s[pos:] if pos < len(s) else None


_WILDCARDS = frozenset("*?[")


def is_pattern(s: str) -> bool:
    """Whether fnmatch treats ``s`` as a pattern (wildcards or escapes), not a plain name."""
    return any(c in _WILDCARDS for c in s) or "\\" in s


# --------------------------------------------------------------------------- softdep


class Softdep:
    """A ``softdep`` line: the module pattern, its pre and post dependencies.

    ``tokens`` keeps every pre/post name in line order with its kind, because
    ``modprobe -c`` prints the contiguous span from the first to the last of
    each kind (libkmod's quirk: ``pre: a bpost: c``).
    """

    __slots__ = ("name", "post", "pre", "tokens")

    def __init__(self, name: str, pre: tuple[str, ...], post: tuple[str, ...],
                 tokens: tuple[tuple[bool, str], ...] = ()) -> None:
        self.name = name
        self.pre = pre
        self.post = post
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"Softdep({self.name!r}, pre={self.pre!r}, post={self.post!r})"

    @classmethod
    def parse(cls, name: str, line: str) -> Softdep:
        mode = 0  # 0 none, 1 pre, 2 post
        tokens: list[tuple[bool, str]] = []
        for tok in _csplit(line):
            if tok == "pre:":
                mode = 1
            elif tok == "post:":
                mode = 2
            elif mode:
                tokens.append((mode == 1, tok))
        pre = tuple(t for is_pre, t in tokens if is_pre)
        post = tuple(t for is_pre, t in tokens if not is_pre)
        return cls(name, pre, post, tuple(tokens))

    def plain(self) -> str:
        """The value ``modprobe -c`` prints after the module name."""
        out = ""
        for want, label in ((True, "pre: "), (False, "post: ")):
            idx = [i for i, (is_pre, _t) in enumerate(self.tokens) if is_pre == want]
            if idx:
                out += label + " ".join(t for _k, t in self.tokens[idx[0]:idx[-1] + 1])
        return out


def _csplit(s: str) -> list[str]:
    """Split on C ``isspace`` characters."""
    for c in "\t\n\v\f\r":
        if c in s:
            s = s.replace(c, " ")
    return s.split()


# --------------------------------------------------------------------------- config


class ModprobeConfig:
    """modprobe.d plus the kernel command line, as libkmod holds it (lists in reading order).

    ``messages`` are the (priority, position, function, text) diagnostics libkmod logs while parsing
    (bad lines, deprecated commands, sub-directories), to be shown by the tool.
    """

    def __init__(self) -> None:
        self.aliases: list[tuple[str, str]] = []  # (pattern, modname)
        self.blacklists: list[str] = []
        self.options: list[tuple[str, str]] = []  # (modname, options)
        self.install_commands: list[tuple[str, str]] = []  # (pattern, command)
        self.remove_commands: list[tuple[str, str]] = []
        self.softdeps: list[Softdep] = []
        # (priority, libkmod source position, libkmod function, text)
        self.messages: list[tuple[int, str, str, str]] = []
        self.files: list[str] = []
        self._cache: dict[str, object] = {}
        self._alias_matcher: _FirstMatch | None = None

    # -- reading ---------------------------------------------------------------

    @classmethod
    def load(cls, paths: Sequence[str] | None = None, dirname: str | None = None,
             cmdline: str | None = None) -> ModprobeConfig:
        """Read the configuration as ``kmod_new(dirname, paths)`` does.

        ``paths`` defaults to :data:`MODPROBE_DIRS`; ``dirname`` is the module
        directory whose ``modules.softdep`` is read among the files; ``cmdline``
        is the kernel command line text (None: not read).
        """
        cfg = cls()
        for fn in cfg.list_files(MODPROBE_DIRS if paths is None else paths, dirname):
            try:
                with open(fn, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            cfg.files.append(fn)
            cfg.parse(data, fn)
        if cmdline is not None:
            cfg.parse_kcmdline(cmdline)
        return cfg

    def list_files(self, paths: Iterable[str], dirname: str | None) -> list[str]:
        """libkmod's conf_files_list: the files to read, sorted by name, first path wins."""
        chosen: dict[str, str] = {}
        if dirname is not None:
            chosen["modules.softdep"] = os.path.join(dirname, "modules.softdep")
        for path in paths:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                continue
            if not stat.S_ISDIR(st.st_mode):
                chosen.setdefault(os.path.basename(path), path)
                continue
            try:
                names = os.listdir(path)
            except OSError as e:
                self.messages.append(
                    (LOG_ERR, libkmod_pos("libkmod-config.c:868"), "conf_files_list",
                     f"opendir({path}): {e.strerror}\n"))
                continue
            for name in names:
                if name.startswith(".") or len(name) < 6 or not (
                        name.endswith(".conf") or name.endswith(".alias")):
                    continue
                full = f"{path}/{name}"
                try:
                    isdir = stat.S_ISDIR(os.stat(full).st_mode)
                except OSError:
                    isdir = False
                if isdir:
                    self.messages.append(
                        (LOG_ERR, libkmod_pos("libkmod-config.c:772"), "conf_files_filter_out",
                         f"Directories inside directories are not supported: {full}\n"))
                    continue
                chosen.setdefault(name, full)
        return [chosen[name] for name in sorted(chosen, key=lambda s: s.encode(
            "utf-8", "surrogateescape"))]

    def parse(self, data: bytes, filename: str) -> None:
        """Parse one modprobe.d file's bytes (libkmod's kmod_config_parse)."""
        for linenum, line in wrapped_lines(data):
            if not line or line[0] == "#":
                continue
            cmd, pos = _strtok(line, 0)
            if cmd is None:
                continue
            ok = True
            if cmd == "alias":
                alias, pos = _strtok(line, pos)
                modname, pos = _strtok(line, pos)
                a, m = underscores(alias), underscores(modname)
                if a is None or m is None:
                    ok = False
                else:
                    self.aliases.append((a, m))
            elif cmd == "blacklist":
                modname, pos = _strtok(line, pos)
                m = underscores(modname)
                if m is None:
                    ok = False
                else:
                    self.blacklists.append(m)
            elif cmd in ("options", "install", "remove", "softdep"):
                modname, pos = _strtok(line, pos)
                rest = _rest(line, pos)
                m = underscores(modname)
                if m is None or rest is None:
                    ok = False
                elif cmd == "options":
                    self.options.append((m, rest.replace("\t", " ")))
                elif cmd == "install":
                    self.install_commands.append((m, rest))
                elif cmd == "remove":
                    self.remove_commands.append((m, rest))
                else:
                    self.softdeps.append(Softdep.parse(m, rest))
            elif cmd in ("include", "config"):
                self.messages.append(
                    (LOG_ERR, libkmod_pos("libkmod-config.c:708"), "kmod_config_parse",
                     f"{filename}: command {cmd} is deprecated and not parsed anymore\n"))
            else:
                ok = False
            if not ok:
                self.messages.append(
                    (LOG_ERR, libkmod_pos("libkmod-config.c:712"), "kmod_config_parse",
                     f"{filename} line {linenum}: ignoring bad line starting with '{cmd}'\n"))
        self._cache.clear()
        self._alias_matcher = None

    def parse_kcmdline(self, text: str) -> None:
        """Add ``mod.param[=value]`` options and ``modprobe.blacklist=`` from a command line.

        The words are :func:`lkm.config.kcmdline.kcmdline_options`'s.
        """
        for modname, param, value in kcmdline_options(text):
            self._kcmdline_result(modname, param, value)
        self._cache.clear()

    def _kcmdline_result(self, modname: str, param: str, value: str | None) -> None:
        if modname == "modprobe" and param.startswith("blacklist="):
            self.blacklists.extend((value or "").split(","))
            return
        m = underscores(modname)
        if m is None:
            self.messages.append(
                (LOG_ERR, libkmod_pos("libkmod-config.c:489"), "kcmdline_parse_result",
                 "Ignoring bad option on kernel command line while parsing module "
                 f"name: '{modname}'\n"))
        else:
            self.options.append((m, param.replace("\t", " ")))

    # -- queries (libkmod's per-module lookups) ----------------------------------

    def _matcher(self, key: str, patterns: Iterable[str]) -> _FirstMatch:
        m = self._cache.get(key)
        if m is None:
            m = self._cache[key] = _FirstMatch(patterns)
        assert isinstance(m, _FirstMatch)
        return m

    def install_command(self, name: str) -> str | None:
        """The first ``install`` command whose pattern matches ``name``."""
        i = self._matcher("install", (p for p, _c in self.install_commands)).first(name)
        return self.install_commands[i][1] if i >= 0 else None

    def remove_command(self, name: str) -> str | None:
        """The first ``remove`` command whose pattern matches ``name``."""
        i = self._matcher("remove", (p for p, _c in self.remove_commands)).first(name)
        return self.remove_commands[i][1] if i >= 0 else None

    def softdep(self, name: str) -> Softdep | None:
        """The first ``softdep`` whose pattern matches ``name`` (later ones are ignored)."""
        i = self._matcher("softdep", (s.name for s in self.softdeps)).first(name)
        return self.softdeps[i] if i >= 0 else None

    def module_options(self, name: str, alias: str | None = None) -> str | None:
        """Options for ``name`` (or the alias it was reached by), joined by spaces; None if none."""
        byname = self._cache.get("options")
        if byname is None:
            d: dict[str, list[tuple[int, str]]] = {}
            for i, (mod, opts) in enumerate(self.options):
                if opts:
                    d.setdefault(mod, []).append((i, opts))
            self._cache["options"] = byname = d
        assert isinstance(byname, dict)
        found: list[tuple[int, str]] | None = byname.get(name)
        if alias is not None and alias != name:
            more = byname.get(alias)
            if more:
                found = sorted((found or []) + more)
        if not found:
            return None
        if len(found) == 1:
            return found[0][1]
        return " ".join(o for _i, o in found)

    def may_match_alias(self, name: str) -> bool:
        """False when no ``alias`` pattern can match ``name`` (a quick test)."""
        m = self._alias_matcher
        if m is None:
            m = self._alias_matcher = self._matcher("alias", (a for a, _m in self.aliases))
        return bool(m.wild) or name in m.exact

    def matching_aliases(self, name: str) -> list[tuple[str, str]]:
        """(pattern, modname) of every config alias whose pattern fnmatches ``name``."""
        m = self._matcher("alias", (a for a, _m in self.aliases))
        return [self.aliases[i] for i in m.all(name)]

    def is_blacklisted(self, name: str) -> bool:
        return name in self.blacklists

    def show(self) -> str:
        """The configuration part of ``modprobe -c`` (before the index dumps)."""
        out: list[str] = []
        out.extend(f"blacklist {m}\n" for m in self.blacklists)
        out.extend(f"install {m} {c}\n" for m, c in self.install_commands)
        out.extend(f"remove {m} {c}\n" for m, c in self.remove_commands)
        out.extend(f"alias {a} {m}\n" for a, m in self.aliases)
        out.extend(f"options {m} {o}\n" for m, o in self.options)
        out.extend(f"softdep {s.name} {s.plain()}\n" for s in self.softdeps)
        return "".join(out)


class _FirstMatch:
    """fnmatch of many patterns against names: exact patterns by dict, the others by regex."""

    __slots__ = ("exact", "wild")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: dict[str, list[int]] = {}
        self.wild: list[tuple[int, bytes]] = []
        for i, pat in enumerate(patterns):
            if is_pattern(pat):
                self.wild.append((i, pat.encode("utf-8", "surrogateescape")))
            else:
                self.exact.setdefault(pat, []).append(i)

    def first(self, name: str) -> int:
        """Index of the first pattern matching ``name``, or -1."""
        hit = self.exact.get(name)
        best = hit[0] if hit else -1
        if self.wild:
            from lkm.index import fnmatch

            bname = name.encode("utf-8", "surrogateescape")
            for i, pat in self.wild:
                if best >= 0 and i > best:
                    break
                if fnmatch(pat, bname):
                    return i
        return best

    def all(self, name: str) -> list[int]:
        """Indexes of every pattern matching ``name``, in order."""
        hit = self.exact.get(name)
        if not self.wild:
            return hit or []
        from lkm.index import fnmatch

        bname = name.encode("utf-8", "surrogateescape")
        found = [i for i, pat in self.wild if fnmatch(pat, bname)]
        return sorted(found + hit) if hit else found

"""depmod.d: ``search``, ``override``, ``external`` and ``exclude``, as kmod 30's
tools/depmod.c (depmod_config_parse, cfg_files_list) reads them.

Unlike modprobe.d, only ``*.conf`` files are read, a misnamed file is reported at
INFO priority, and each directive is prepended to its list (the last one read comes
first), which is the order the module search applies them in.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence

from lkm.config.lines import read_file, wrapped_lines
from lkm.logprio import LOG_ERR, LOG_INFO

DEPMOD_DIRS = ("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/lib/depmod.d")

LogFn = Callable[[int, str], None]
"""A message callback: ``log(priority, text)``, priorities as lkm.logprio's (syslog's)."""


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


class DepmodConfig:
    """depmod.d settings, kept in kmod's list order (each directive is prepended, so
    the last one read comes first)."""

    def __init__(self, searches: list[str] | None = None, overrides: list[str] | None = None,
                 externals: list[str] | None = None, excludes: list[str] | None = None
                 ) -> None:
        self.searches = searches if searches is not None else []  # paths, "built-in", "external"
        self.overrides = overrides if overrides is not None else []  # "subdir/modname"
        self.externals = externals if externals is not None else []
        self.excludes = excludes if excludes is not None else []

    def __repr__(self) -> str:
        return (f"DepmodConfig(searches={self.searches!r}, overrides={self.overrides!r}, "
                f"externals={self.externals!r}, excludes={self.excludes!r})")

    @classmethod
    def load(cls, kversion: str, paths: Sequence[str] | None, log: LogFn) -> DepmodConfig:
        """Read depmod.d for kernel ``kversion``: the files of ``paths`` (directories or
        files; None: :data:`DEPMOD_DIRS`), kmod's messages handed to ``log``.  Without any
        ``search`` line the search list is ``updates``."""
        cfg = cls()
        for fname in config_file_list(DEPMOD_DIRS if paths is None else paths, log):
            try:
                data = read_file(fname)
            except OSError as e:
                log(LOG_ERR, f"file parse {fname}: {e.strerror}\n")
                continue
            cfg.parse(data, fname, kversion, log)
        if not cfg.searches:
            cfg.searches.append("updates")
        return cfg

    def parse(self, data: bytes, fname: str, kversion: str, log: LogFn) -> None:
        """Add the directives of one depmod.d file's bytes (depmod_config_parse)."""
        # read in file order, prepended once at the end (one insert per entry would be
        # quadratic in a hostile file's size)
        searches: list[str] = []
        overrides: list[str] = []
        externals: list[str] = []
        excludes: list[str] = []
        for lineno, line in wrapped_lines(data):
            if not line or line[0] == "#":
                continue
            toks = [t for t in re.split(r"[\t ]+", line) if t]  # strtok_r(line, "\t ")
            if not toks:
                continue
            cmd, args = toks[0], toks[1:]
            if cmd == "search":
                searches += args
            elif cmd == "override" and len(args) >= 3:
                modname, version, subdir = args[:3]
                if not _kernel_matches(version, kversion):
                    log(LOG_INFO, f"{fname}:{lineno}: override kernel did not match {version}\n")
                    continue
                overrides.append(f"{subdir}/{modname}")
            elif cmd == "external" and len(args) >= 2:
                version, path = args[:2]
                if not _kernel_matches(version, kversion):
                    log(LOG_INFO, f"{fname}:{lineno}: external directory did not match "
                                  f"{version}\n")
                    continue
                externals.append(path)
            elif cmd == "exclude":
                excludes += args
            elif cmd in ("include", "make_map_files"):
                log(LOG_INFO, f"{fname}:{lineno}: command {cmd} not implemented yet\n")
            else:
                log(LOG_ERR, f"{fname}:{lineno}: ignoring bad line starting with '{cmd}'\n")
        for into, new in ((self.searches, searches), (self.overrides, overrides),
                          (self.externals, externals), (self.excludes, excludes)):
            into[:0] = new[::-1]


def config_file_list(paths: Sequence[str], log: LogFn) -> list[str]:
    """The depmod.d files to read, kmod's way: ``*.conf`` of each directory (a file path
    is taken as is), sorted by name; a name met again in a later path is ignored."""
    chosen: dict[str, str] = {}
    for base in paths:
        try:
            st = os.stat(base)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            name = base[base.rfind("/") + 1:]
            chosen.setdefault(name, base)
            continue
        try:
            names = os.listdir(base)
        except OSError as e:
            log(LOG_ERR, f"files list {base}: {e.strerror}\n")
            continue
        for name in names:
            if name.startswith("."):
                continue
            if len(name) < 6 or not name.endswith(".conf"):
                log(LOG_INFO, f"All cfg files need .conf: {base}/{name}\n")
                continue
            full = f"{base}/{name}"
            if os.path.isdir(full):
                log(LOG_ERR, f"Directories inside directories are not supported: {full}\n")
                continue
            chosen.setdefault(name, full)
    return [chosen[k] for k in sorted(chosen, key=_enc)]


def _kernel_matches(pattern: str, kversion: str) -> bool:
    """``*`` or an unanchored POSIX extended regex (regcomp/regexec) matching kversion."""
    if pattern == "*":
        return True
    return _posix_ere_search(pattern, kversion)


_regex_lib: object | None = None


def _posix_ere_search(pattern: str, s: str) -> bool:
    """regexec(regcomp(pattern, REG_EXTENDED|REG_NOSUB), s) == 0, through the C library
    (Python's re is used if it cannot be loaded); a bad pattern matches nothing."""
    global _regex_lib
    try:
        import ctypes
        import ctypes.util

        if _regex_lib is None:
            _regex_lib = ctypes.CDLL(ctypes.util.find_library("c") or None)
        lib = _regex_lib
        buf = ctypes.create_string_buffer(256)  # larger than glibc's regex_t (64 bytes)
        if lib.regcomp(buf, _enc(pattern), 1 | 8) != 0:  # type: ignore[attr-defined]
            return False
        try:
            return int(lib.regexec(buf, _enc(s), 0, None, 0)) == 0  # type: ignore[attr-defined]
        finally:
            lib.regfree(buf)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        try:
            return re.search(pattern, s) is not None
        except re.error:
            return False

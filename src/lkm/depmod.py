"""depmod: scan a module tree, resolve symbol dependencies, write kmod's index files.

The behaviour and every output byte follow Debian's kmod 30 ``depmod``:

* the tree is walked in readdir order; of two files giving the same module name
  the one preferred by depmod.d (``override``, then ``search`` order with
  ``built-in`` and ``external`` slots) wins, else the first met;
* module order (``mod.idx``, the priority in the indexes) is modules.order first,
  then libkmod's hash-table order: (SuperFastHash(name) & 511, strcmp);
* exports are the ``__crc_`` symbols, else ``__ksymtab_strings``; a later module in
  that order takes over an export; undefined symbols then unmatched ``__versions``
  entries give the dependencies;
* Kahn's sort (a LIFO of modules nobody uses) numbers the modules; each
  modules.dep line lists the transitive dependencies by that number;
* files are written as ``<name>.<pid>.<usec>.<sec>`` and renamed in place.

Messages carry kmod's text and are handed to a ``log(priority, text)`` callback
(priorities are syslog's, as kmod's tools use them); ``-v`` lines go to ``show``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import io
import os
import re
import signal
import stat
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from lkm.errors import FormatError, IndexError_, InvalidAlias, LkmError
from lkm.index import IndexBuilder, Layout
from lkm.logprio import LOG_CRIT, LOG_ERR, LOG_INFO, LOG_WARNING
from lkm.moddb import alias_normalize as _lookup_key
from lkm.moddb import modname_from_path

if TYPE_CHECKING:
    from lkm.module import ModuleFile


PATH_MAX = 4096
CFG_DIRS = ("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/lib/depmod.d")

# module file extensions depmod scans (kmod built with zlib, xz and zstd)
KMOD_EXTENSIONS = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")

# output files in kmod's order
OUTPUTS = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
           "modules.softdep", "modules.symbols", "modules.symbols.bin", "modules.builtin.bin",
           "modules.builtin.alias.bin", "modules.devname")
TEXT_OUTPUTS = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols",
                "modules.devname")

LogFn = Callable[[int, str], None]


class DepmodError(LkmError):
    """depmod cannot go on; the message is kmod's text (printed at ``priority``)."""

    def __init__(self, message: str, priority: int = LOG_CRIT) -> None:
        super().__init__(message)
        self.priority = priority


class DependencyCycleError(DepmodError):
    """Modules depend on each other in a cycle (kmod reports them and writes nothing)."""

    def __init__(self, cycles: list[list[str]], count: int) -> None:
        super().__init__(f"Found {count} modules in dependency cycles!\n", LOG_ERR)
        self.cycles = cycles
        self.count = count


# --------------------------------------------------------------------------- hashing


_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def superfast_hash(key: bytes) -> int:
    """Paul Hsieh's SuperFastHash as libkmod's hash table computes it (32-bit; a trailing
    byte is read as a signed char).  Masks are applied only before right shifts."""
    n = len(key)
    h = n
    m = 0xFFFFFFFF
    if n > 1:
        unpack = _WORDS.get(n)
        if unpack is None:
            unpack = _WORDS[n] = struct.Struct(f"<{n >> 1}H").unpack_from
        words = unpack(key)
        i = 0
        for i in range(0, (n >> 2) << 1, 2):
            h += words[i]
            h = ((h << 16) ^ (words[i + 1] << 11) ^ h) & m
            h += h >> 11
        w = (n >> 2) << 1
        rem = n & 3
        if rem == 3:
            c = key[n - 1]
            h += words[w]
            h = (h ^ (h << 16) ^ ((c - 256 if c > 127 else c) << 18)) & m
            h += h >> 11
        elif rem == 2:
            h += words[w]
            h = (h ^ (h << 11)) & m
            h += h >> 17
    if n & 3 == 1:
        c = key[n - 1]
        h = (h + (c - 256 if c > 127 else c)) & m
        h ^= h << 10
        h &= m
        h += h >> 1
    h = (h ^ (h << 3)) & m
    h += h >> 5
    h = (h ^ (h << 4)) & m
    h += h >> 17
    h = (h ^ (h << 25)) & m
    h += h >> 6
    return h & m


def hash_order_key(name: str, buckets: int) -> tuple[int, bytes]:
    """Where libkmod's hash table of ``buckets`` buckets iterates ``name``."""
    b = _enc(name)
    return superfast_hash(b) & (buckets - 1), b


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- names


def alias_normalize(alias: str) -> str | None:
    """kmod's alias_normalize as depmod uses it: None on an unmatched bracket."""
    try:
        return _lookup_key(alias)
    except InvalidAlias:
        return None


def _has_kmod_ext(name: str) -> bool:
    return any(len(name) > len(ext) and name.endswith(ext) for ext in KMOD_EXTENSIONS)


def is_version_number(s: str) -> bool:
    """sscanf(s, "%u.%u") == 2."""
    return re.match(r"\s*[+-]?\d+\.\s*[+-]?\d+", s) is not None


def _strerror(err: int) -> str:
    return os.strerror(err)


# --------------------------------------------------------------------------- line readers


def fgets_lines(data: bytes, size: int = PATH_MAX) -> Iterator[bytes]:
    """The strings ``fgets(buf, size)`` returns over ``data``, cut at a NUL as strlen does."""
    pos, n = 0, len(data)
    limit = size - 1
    while pos < n:
        nl = data.find(b"\n", pos, pos + limit)
        end = nl + 1 if nl >= 0 else min(pos + limit, n)
        chunk = data[pos:end]
        pos = end
        z = chunk.find(b"\0")
        yield chunk if z < 0 else chunk[:z]


def wrapped_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """kmod's freadline_wrapped: (line number, line); a backslash-newline joins lines,
    a backslash before any other character is dropped."""
    lineno = 0
    n = len(data)
    pos = 0
    while pos < n:
        buf = bytearray()
        used = 0
        while True:
            nl = data.find(b"\n", pos)
            bs = data.find(b"\\", pos)
            stop = nl if nl >= 0 else n
            if 0 <= bs < stop:
                buf += data[pos:bs]
                if bs + 1 < n and data[bs + 1] == 0x0A:
                    used += 1
                    pos = bs + 2
                    continue
                if bs + 1 < n:
                    buf.append(data[bs + 1])
                pos = bs + 2
                continue
            buf += data[pos:stop]
            if nl < 0:
                pos = n
                if not buf:
                    return
            else:
                pos = nl + 1
            used += 1
            break
        lineno += used
        yield lineno, bytes(buf)


# --------------------------------------------------------------------------- configuration


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


def load_config(kversion: str, paths: Sequence[str] | None, log: LogFn) -> DepmodConfig:
    """Read depmod.d (``paths`` or kmod's default directories) for kernel ``kversion``."""
    cfg = DepmodConfig()
    for fname in config_file_list(CFG_DIRS if paths is None else paths, log):
        try:
            data = _read_file(fname)
        except OSError as e:
            log(LOG_ERR, f"file parse {fname}: {e.strerror}\n")
            continue
        for lineno, raw in wrapped_lines(data):
            if not raw or raw[0] in b"#\0":
                continue
            line = _dec(raw.split(b"\0", 1)[0])
            toks = [t for t in re.split(r"[\t ]+", line) if t]
            if not toks:
                continue
            cmd, args = toks[0], toks[1:]
            if cmd == "search":
                for a in args:
                    cfg.searches.insert(0, a)
            elif cmd == "override" and len(args) >= 3:
                modname, version, subdir = args[:3]
                if not _kernel_matches(version, kversion):
                    log(LOG_INFO, f"{fname}:{lineno}: override kernel did not match {version}\n")
                    continue
                cfg.overrides.insert(0, f"{subdir}/{modname}")
            elif cmd == "external" and len(args) >= 2:
                version, path = args[:2]
                if not _kernel_matches(version, kversion):
                    log(LOG_INFO, f"{fname}:{lineno}: external directory did not match "
                                  f"{version}\n")
                    continue
                cfg.externals.insert(0, path)
            elif cmd == "exclude":
                for a in args:
                    cfg.excludes.insert(0, a)
            elif cmd in ("include", "make_map_files"):
                log(LOG_INFO, f"{fname}:{lineno}: command {cmd} not implemented yet\n")
            else:
                log(LOG_ERR, f"{fname}:{lineno}: ignoring bad line starting with '{cmd}'\n")
    if not cfg.searches:
        cfg.searches.append("updates")
    return cfg


# --------------------------------------------------------------------------- modules


class Mod:
    """One module of the tree (kmod's struct mod)."""

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
        self.deps: list[Mod] = []
        self.data: ModuleData | None = None
        self.info: list[tuple[str, str]] = []

    @property
    def out_path(self) -> str:
        """The path written in the outputs: relative to the module dir when inside it."""
        return self.relpath if self.relpath is not None else self.path

    def __repr__(self) -> str:
        return f"Mod({self.modname!r}, {self.path!r})"


class ModuleData(NamedTuple):
    """What depmod reads from one module file."""

    exports: list[str]
    export_crcs: list[int] | None  # when asked for (-E)
    dep_names: list[str]  # undefined symbols, then unmatched __versions entries
    dep_crcs: list[int] | None  # when asked for (-E)
    dep_weak: list[bool] | None  # when asked for (-E, -e)
    dotted: bool  # some dependency name starts with '.'
    info: list[tuple[str, str]]  # .modinfo "alias" and "softdep" entries, in order
    error: int = 0  # errno when the file could not be read as a module
    export_buckets: bytes = b""  # u16 superfast_hash(name) & 2047 per export, if computed


def _module_data(exports: list[tuple[str, int]], deps: list[tuple[str, int, bool]],
                 info: list[tuple[str, str]], detail: bool) -> ModuleData:
    names = [n for n, _w in exports]
    dep_names = [n for n, _c, _w in deps]
    return ModuleData(names, [c for _n, c in exports] if detail else None, dep_names,
                      [c for _n, c, _w in deps] if detail else None,
                      [w for _n, _c, w in deps] if detail else None,
                      any(n.startswith(".") for n in dep_names), info)


def _failed(err: int) -> ModuleData:
    return ModuleData([], None, [], None, None, False, [], err)


def read_module_data(path: str, detail: bool = False) -> ModuleData:
    """Exports, dependency symbols and alias/softdep modinfo of the module at ``path``,
    as libkmod reads them for depmod; ``detail`` adds CRCs and weak flags."""
    from lkm.module import ModuleFile

    try:
        m = ModuleFile.open(path)
    except OSError as e:
        return _failed(e.errno if e.errno is not None else _errno.EIO)
    except FormatError as e:
        return _failed(e.errno)
    if m.compression is None and len(m.content) < 6:
        m.close()
        return _failed(_errno.EINVAL)  # libkmod reads 6 magic bytes before anything else
    try:
        try:
            elf = m.elf
        except FormatError as e:
            return _failed(e.errno)
        if elf.elfclass == 64 and elf.little_endian:
            fast = _fast_module_data(m, detail)
            if fast is not None:
                return fast
        exports = _exports(m, detail)
        dep_syms = _dependency_symbols(m)
        try:
            info = [(k, v) for k, v in m.modinfo if k == "alias" or k == "softdep"]
        except FormatError:
            info = []
        return _module_data(exports, dep_syms, info, detail)
    finally:
        m.close()


_ALIAS = b"alias"
_SOFTDEP = b"softdep"


_ZERO = re.compile(b"\0")
_VERSION_NAMES = re.compile(r"(?s).{8}(.{56})")


def _fast_module_data(m: ModuleFile, detail: bool = False) -> ModuleData | None:
    """The common case (ELF64 little endian, ASCII names) read column-wise; ``detail``
    adds CRCs and weak flags.  None when anything is unusual, for the general path to
    handle (and report) it."""
    elf = m.elf
    isym = elf.section_index(".symtab")
    istr = elf.section_index(".strtab")
    if isym is None or istr is None:
        return None
    try:
        tab = elf.section_data(isym)
        text = str(elf.section_data(istr), "ascii")
        iver = elf.section_index("__versions")
        versions = elf.section_data(iver) if iver is not None else None
        imod = elf.section_index(".modinfo")
        modinfo = elf.section_data(imod) if imod is not None else None
        iks = elf.section_index("__ksymtab_strings")
        ksymtab_strings = elf.section_data(iks) if iks is not None else None
    except (FormatError, UnicodeDecodeError):
        return None
    ntab = len(tab)
    if ntab % 24 or ntab == 0 or not text.endswith("\0"):
        return None
    ntext = len(text)

    # undefined symbols: st_shndx == 0 (both bytes), in table order (empty names skipped)
    lo = tab[30::24].tobytes()  # symbols 1..: st_shndx low byte
    hi = tab[31::24]
    words = tab.cast("I")
    undef_idx = [i + 1 for i in [k.start() for k in _ZERO.finditer(lo)] if not hi[i]]
    offs = [words[i * 6] for i in undef_idx]
    if offs and max(offs) >= ntext:
        return None
    index = text.index
    dep_names = [text[o:index("\0", o)] for o in offs]
    if "" in dep_names:
        keep = [k for k, n in enumerate(dep_names) if n]
        dep_names = [dep_names[k] for k in keep]
        undef_idx = [undef_idx[k] for k in keep]
    dep_weak = [tab[i * 24 + 4] >> 4 == 2 for i in undef_idx] if detail else None

    # exports: symbols named __crc_*, else the strings of __ksymtab_strings
    exports: list[str] = []
    export_crcs: list[int] | None = [] if detail else None
    pos = text.find("__crc_")
    if pos >= 0:
        names_col = words[6::6].tobytes()  # st_name of symbols 1..n-1, 4 bytes each
        while pos >= 0:
            key = pos.to_bytes(4, "little")
            at = names_col.find(key)
            while at & 3:
                at = names_col.find(key, at + 1)
            if at >= 0:
                exports.append(text[pos + 6:index("\0", pos)])
                if export_crcs is not None:
                    export_crcs.append(_resolve_crc(m, tab, (at >> 2) + 1))
            pos = text.find("__crc_", pos + 1)
    if not exports and ksymtab_strings is not None:
        exports = [_dec(x) for x in bytes(ksymtab_strings).split(b"\0") if x]
        export_crcs = [0] * len(exports) if detail else None

    # __versions: 64-byte records, a u64 CRC then the NUL-padded name; the entries no
    # undefined symbol matched come after the undefined symbols
    dep_crcs: list[int] | None = [0] * len(dep_names) if detail else None
    if versions is not None and len(versions) and len(versions) % 64 == 0:
        vnames = [f.partition("\0")[0]
                  for f in _VERSION_NAMES.findall(str(versions, "latin-1"))]
        undef = set(dep_names)
        extra_at: list[int]
        if len(set(vnames)) == len(vnames):
            extra_at = [k for k, n in enumerate(vnames) if n not in undef]
        else:  # an undefined symbol marks the first entry of its name only
            extra_at = []
            matched: set[str] = set()
            for k, n in enumerate(vnames):
                if n in undef and n not in matched:
                    matched.add(n)
                else:
                    extra_at.append(k)
        if detail:
            vcrcs = versions.cast("Q")[::8].tolist()
            first: dict[str, int] = {}
            for n, c in zip(vnames, vcrcs, strict=True):
                first.setdefault(n, c)
            dep_crcs = [first.get(n, 0) for n in dep_names] + [vcrcs[k] for k in extra_at]
            assert dep_weak is not None
            dep_weak += [False] * len(extra_at)
        extra = [vnames[k] for k in extra_at]
        if extra:
            if not "".join(extra).isascii():
                return None
            dep_names += extra
    dotted = "\0." in "\0" + "\0".join(dep_names)

    info = []
    if modinfo is not None and len(modinfo):
        for entry in str(modinfo, "utf-8", "surrogateescape").split("\0"):
            if entry.startswith(("alias", "softdep")):
                tag, _eq, value = entry.partition("=")
                if tag == "alias" or tag == "softdep":
                    info.append((tag, value))
    buckets = array("H", [superfast_hash(n.encode()) & 2047 for n in exports]).tobytes()
    return ModuleData(exports, export_crcs, dep_names, dep_crcs, dep_weak, dotted, info, 0,
                      buckets)


def _resolve_crc(m: ModuleFile, tab: memoryview, i: int) -> int:
    """kmod_elf_resolve_crc for symbol ``i`` of ``tab``: the value itself (absolute or
    undefined symbol) or the u32 it points at; all ones when it points outside."""
    elf = m.elf
    shndx = tab[i * 24 + 6] | tab[i * 24 + 7] << 8
    value = int.from_bytes(tab[i * 24 + 8:i * 24 + 16], "little")
    if shndx in (0, 0xFFF1):
        return value
    if shndx >= elf.e_shnum:
        return 0xFFFFFFFFFFFFFFFF
    h = elf.section_header(shndx)
    if value > (h[5] - 4) % (1 << 64):
        return 0xFFFFFFFFFFFFFFFF
    off = h[4] + value
    if off + 4 > len(m.content):  # elf_get_uint's answer to an offset past the end
        return 0xFFFFFFFFFFFFFFFF
    return int.from_bytes(memoryview(m.content)[off:off + 4], "little")


def _exports(m: ModuleFile, want_crcs: bool) -> list[tuple[str, int]]:
    """kmod_elf_get_symbols: ModuleFile.export_names_for_depmod (``__crc_<sym>`` symbols,
    else the strings of ``__ksymtab_strings``), with the ``__crc_`` CRCs resolved when
    wanted (CRC 0 otherwise)."""
    names = m.export_names_for_depmod()
    if want_crcs:
        try:
            crcs = _crc_exports(m)
        except FormatError:
            crcs = []
        if crcs:
            return crcs
    return [(n, 0) for n in names]


def _crc_exports(m: ModuleFile) -> list[tuple[str, int]]:
    from lkm.elf import SHN_ABS, SHN_UNDEF
    elf = m.elf
    out = []
    little = elf.little_endian
    for s in elf.symbols()[1:]:
        if not s.name.startswith("__crc_"):
            continue
        crc = s.value
        if s.shndx not in (SHN_ABS, SHN_UNDEF):
            if s.shndx >= elf.e_shnum:
                crc = 0xFFFFFFFFFFFFFFFF
            else:
                h = elf.section_header(s.shndx)
                size = h[5]
                if crc > (size - 4) % (1 << 64):
                    crc = 0xFFFFFFFFFFFFFFFF
                else:
                    off = h[4] + crc
                    raw = bytes(memoryview(m.content)[off:off + 4])
                    crc = (int.from_bytes(raw, "little" if little else "big") if len(raw) == 4
                           else 0xFFFFFFFFFFFFFFFF)
        out.append((s.name[6:], crc))
    return out


def _dependency_symbols(m: ModuleFile) -> list[tuple[str, int, bool]]:
    """kmod_elf_get_dependency_symbols: undefined ``.symtab`` symbols in table order (CRC
    from ``__versions``), then the ``__versions`` entries no undefined symbol matched."""
    from lkm.elf import STB_WEAK
    try:
        undef = m.elf.undefined_symbols_with_bind()
    except FormatError:
        return []
    try:
        versions = m.versions
    except FormatError:
        versions = []
    if not versions:
        return [(n, 0, b == STB_WEAK) for n, b in undef]
    first: dict[str, int] = {}
    for i, (n, _crc) in enumerate(versions):
        first.setdefault(n, i)
    visited = [False] * len(versions)
    out = []
    for n, b in undef:
        k = first.get(n)
        if k is None:
            out.append((n, 0, b == STB_WEAK))
        else:
            visited[k] = True
            out.append((n, versions[k][1], b == STB_WEAK))
    for i, (n, crc) in enumerate(versions):
        if not visited[i]:
            out.append((n, crc, False))
    return out


# --------------------------------------------------------------------------- depmod


class _Vertex:
    """A step of the cycle search: a module and the vertex it was reached from."""

    __slots__ = ("mod", "parent")

    def __init__(self, mod: Mod, parent: _Vertex | None) -> None:
        self.mod = mod
        self.parent = parent


class Symbol(NamedTuple):
    """A symbol vmlinux (-E, -F) or a module exports."""

    name: str
    owner: Mod | None
    crc: int


class Depmod:
    """One depmod run over ``dirname`` (``<basedir>/lib/modules/<kversion>``)."""

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
        self._log = log or (lambda prio, msg: self.messages.append((prio, msg)))
        self._show = show or (lambda msg: None)
        self.jobs = jobs if jobs is not None else _default_jobs()
        self.modules: list[Mod] = []
        self.by_name: dict[str, Mod] = {}
        self.symbols: dict[str, Symbol] = {}  # vmlinux's, from -E or -F
        self.owner: dict[str, Mod] = {}  # module exports: the last module in order wins
        self.export_crc: dict[str, int] = {}  # with -E
        self._dep_lines: list[str] | None = None
        self._sorted_symbols: list[tuple[str, Mod]] | None = None
        self._built = False
        self._irregular: set[str] = set()

    def log(self, prio: int, msg: str) -> None:
        self._log(prio, msg)

    # -- symbols from Module.symvers / System.map

    def _symbol_add(self, name: str, prefix_skipped: bool, crc: int, owner: Mod | None) -> None:
        """A vmlinux symbol (owner None), from Module.symvers or System.map."""
        if not prefix_skipped and self.sym_prefix and name.startswith(self.sym_prefix):
            name = name[1:]
        self.symbols[name] = Symbol(name, owner, crc)

    def _symbol_find(self, name: str) -> Symbol | None:
        if name.startswith("."):
            name = name[1:]
        if self.sym_prefix and name.startswith(self.sym_prefix):
            name = name[1:]
        return self.symbols.get(name)

    def _add_fake_symbols(self) -> None:
        self._symbol_add("__this_module", True, 0, None)
        self._symbol_add("_GLOBAL_OFFSET_TABLE_", True, 0, None)
        if self._symbol_find("TOC.") is None:
            self._symbol_add("TOC.", True, 0, None)

    def load_symvers(self, filename: str) -> None:
        """Add vmlinux's symbols and CRCs from a Module.symvers (OSError if unreadable)."""
        data = _read_file(filename)
        for lineno, raw in enumerate(fgets_lines(data, 10240), 1):
            toks = [t for t in re.split(rb"[ \t]+", raw) if t]
            if len(toks) < 3 or toks[2] != b"vmlinux":
                continue
            ver = toks[0]
            m = re.match(rb"\s*[+-]?(?:0[xX])?([0-9a-fA-F]*)", ver)
            assert m is not None
            rest = ver[m.end():]
            if rest:
                self.log(LOG_ERR, f"{filename}:{lineno} Invalid symbol version {_dec(ver)}: "
                                  f"{_strerror(0)}\n")
                continue
            crc = int(m.group(1), 16) if m.group(1) else 0
            if ver.lstrip().startswith(b"-"):
                crc = (-crc) & 0xFFFFFFFFFFFFFFFF
            self._symbol_add(_dec(toks[1]), False, min(crc, 0xFFFFFFFFFFFFFFFF), None)
        self._add_fake_symbols()

    def load_system_map(self, filename: str) -> None:
        """Add vmlinux's exports from the ``__ksymtab_*`` lines of a System.map."""
        data = _read_file(filename)
        prefix = _enc(self.sym_prefix)
        for lineno, raw in enumerate(fgets_lines(data, 10240), 1):
            p = raw.find(b" ")
            q = raw.find(b" ", p + 1) if p >= 0 else -1
            if q < 0:
                self.log(LOG_ERR, f"{filename}:{lineno}: invalid line: {_dec(raw)}")
                continue
            rest = raw[q + 1:]
            if prefix and rest.startswith(prefix):
                rest = rest[1:]
            if not rest.startswith(b"__ksymtab_"):
                continue
            nl = rest.find(b"\n")
            if nl >= 0:
                rest = rest[:nl]
            self._symbol_add(_dec(rest[10:]), True, 0, None)
        self._add_fake_symbols()

    # -- finding modules

    def _is_higher_priority(self, old: Mod, newpath: str, baselen: int, modnamelen: int
                            ) -> bool:
        """True when the module already found outranks the file ``newpath``."""
        dirname = self.dirname
        dn = len(dirname)
        newlen = baselen + modnamelen
        oldpath = old.path
        oldlen = old.baselen + len(old.modname) + 1
        relnew = reloldp = None
        relnewlen = reloldlen = 0
        if newpath.startswith(dirname):
            relnew = newpath[dn + 1:]
            relnewlen = newlen - (dn + 1)
        if oldpath.startswith(dirname):
            reloldp = oldpath[dn + 1:]
            reloldlen = oldlen - (dn + 1)
        for ov in self.cfg.overrides:
            if relnew is not None and relnewlen == len(ov) and relnew[:relnewlen] == ov:
                return False
            if reloldp is not None and reloldlen == len(ov) and reloldp[:reloldlen] == ov:
                return True
        bprio = oldprio = newprio = -1
        i = 0
        for se in self.cfg.searches:
            if se == "built-in":
                bprio = i
            elif se == "external":
                for ext in self.cfg.externals:
                    if _starts_with_dir(newpath, newlen, ext):
                        newprio = i
                    if _starts_with_dir(oldpath, oldlen, ext):
                        oldprio = i
                    i += 1
            elif relnew is not None and relnewlen > len(se) and relnew[len(se)] == "/" \
                    and relnew.startswith(se):
                newprio = i
            elif reloldp is not None and reloldlen > len(se) and reloldp[len(se)] == "/" \
                    and reloldp.startswith(se):
                oldprio = i
            i += 1
        if newprio < 0:
            newprio = bprio
        if oldprio < 0:
            oldprio = bprio
        return newprio <= oldprio

    def _search_file(self, path: str, baselen: int) -> None:
        name = path[baselen:]
        if not _has_kmod_ext(name):
            return
        modname = modname_from_path(path)
        if modname is None:
            self.log(LOG_ERR, f"could not get modname from path {path}\n")
            return
        old = self.by_name.get(modname)
        if old is not None:
            if self._is_higher_priority(old, path, baselen, len(modname)):
                return
            del self.by_name[modname]
        self.by_name[modname] = Mod(path, modname, self.dirname)

    def _search_dir(self, top: str) -> None:
        """Walk ``top`` in readdir order (kmod's depmod_modules_search_dir)."""
        excludes = set(self.cfg.excludes)
        excludes.update(("build", "source"))
        try:
            st = os.stat(top)
        except OSError:
            st = None
        seen: set[tuple[int, int]] = set() if st is None else {(st.st_dev, st.st_ino)}
        stack: list[Iterator[os.DirEntry[str]]] = []
        bases: list[str] = []
        try:
            it = os.scandir(top)
        except OSError as e:
            raise DepmodError(f"could not open directory {top}: {e.strerror}\n", LOG_ERR) from e
        stack.append(it)
        bases.append(top + "/")
        while stack:
            base = bases[-1]
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                bases.pop()
                continue
            name = entry.name
            if name in excludes:
                continue
            path = base + name
            try:
                if entry.is_dir():
                    is_dir = True
                elif entry.is_file():
                    is_dir = False
                else:
                    mode = entry.stat().st_mode
                    self.log(LOG_ERR, f"unsupported file type {path}: {mode & 0o170000:o}\n")
                    continue
            except OSError as e:
                self.log(LOG_ERR, f"fstatat({_fake_fd(len(stack))}, {name}): {e.strerror}\n")
                continue
            if is_dir:
                try:
                    dst = entry.stat()
                    key = (dst.st_dev, dst.st_ino)
                    if key in seen:  # a symlink loop: kmod would recurse until EMFILE
                        self.log(LOG_ERR, f"openat({_fake_fd(len(stack))}, {name}, O_RDONLY): "
                                          f"{_strerror(_errno.ELOOP)}\n")
                        continue
                    sub = os.scandir(path)
                except OSError as e:
                    self.log(LOG_ERR, f"openat({_fake_fd(len(stack))}, {name}, O_RDONLY): "
                                      f"{e.strerror}\n")
                    continue
                seen.add(key)
                stack.append(sub)
                bases.append(path + "/")
            else:
                self._search_file(path, len(base))

    def search(self) -> None:
        """Find the modules of the module directory, then of each ``external`` directory."""
        self._search_dir(self.dirname)
        for ext in self.cfg.externals:
            try:
                self._search_dir(ext)
            except DepmodError as e:
                self.log(LOG_ERR, str(e))

    def add_paths(self, paths: Iterable[str]) -> None:
        """Use exactly these module files (absolute paths), as ``depmod VERSION FILE...``."""
        for path in paths:
            if not path.startswith("/"):
                raise DepmodError(f"{path}: not absolute path.\n")
            try:
                st = os.stat(path)
            except OSError as e:
                raise DepmodError(f"could not create module {path}: {e.strerror}\n") from e
            if not stat.S_ISREG(st.st_mode):
                self._irregular.add(path)  # not read: kmod would block on a FIFO
            modname = modname_from_path(path)
            if modname is None:
                raise DepmodError(f"could not create module {path}: "
                                  f"{_strerror(_errno.ENOENT)}\n")
            old = self.by_name.get(modname)
            if old is not None:
                if old.path != path:
                    # libkmod's message, as Debian's build (with debug) prints it
                    self.log(LOG_ERR, "../libkmod/libkmod-module.c:428 "
                                      f"kmod_module_new_from_path() kmod_module '{modname}' "
                                      f"already exists with different path: new-path='{path}' "
                                      f"old-path='{old.path}'\n")
                    raise DepmodError(f"could not create module {path}: "
                                      f"{_strerror(_errno.EEXIST)}\n")
                self.log(LOG_ERR, f"hash_add_unique {modname}: {_strerror(_errno.EEXIST)}\n")
                raise DepmodError(f"could not add module {path}: "
                                  f"{_strerror(_errno.EEXIST)}\n")
            self.by_name[modname] = Mod(path, modname, self.dirname)

    # -- ordering

    def build_array(self) -> None:
        """Modules in libkmod's hash-table order, then modules.order first (load() does it
        if not done before)."""
        self._built = True
        mods = sorted(self.by_name.values(), key=lambda m: hash_order_key(m.modname, 512))
        for i, m in enumerate(mods):
            m.idx = i
        self.modules = mods
        self._sort_by_order()

    def _sort_by_order(self) -> None:
        fname = "modules.order"
        data = self._read_input(fname)
        if data is None:
            return
        lines = list(fgets_lines(data))
        for idx, line in enumerate(lines, 1):
            if line and not line.endswith(b"\n"):
                self.log(LOG_ERR, f"{self.dirname}/{fname}:{idx} corrupted line misses "
                                  "'\\n'\n")
                return
        total = len(lines) + 1
        by_unc = {m.uncrelpath: m for m in self.modules if m.uncrelpath is not None}
        for idx, line in enumerate(lines, 1):
            if not line:
                continue
            m = by_unc.get(_dec(line[:-1]))
            if m is not None:
                m.sort_idx = idx - total
        self.modules.sort(key=lambda m: m.sort_idx)
        for i, m in enumerate(self.modules):
            m.idx = i

    def _read_input(self, name: str) -> bytes | None:
        """A file of the module directory, or None with kmod's warning."""
        try:
            fd = os.open(self.dirname, os.O_RDONLY)
        except OSError as e:
            self.log(LOG_WARNING, f"could not open directory {self.dirname}: {e.strerror}\n")
            return None
        try:
            return _read_file(name, fd)
        except OSError as e:
            self.log(LOG_WARNING, f"could not open {name} at {self.dirname}: {e.strerror}\n")
            return None
        finally:
            os.close(fd)

    # -- loading

    def load(self) -> None:
        """Read every module, resolve symbols and dependencies, sort topologically.

        Raises DependencyCycleError (after logging each cycle) when there are cycles.
        """
        detail = self.check_symvers or self.print_unknown
        skip = frozenset(self._irregular)
        if self._built:
            results = _read_all([m.path for m in self.modules], detail, self.jobs, skip=skip)
        else:  # order the modules while the reader processes start
            found = list(self.by_name.values())
            got = _read_all([m.path for m in found], detail, self.jobs, self.build_array, skip)
            by_mod = {id(m): d for m, d in zip(found, got, strict=True)}
            results = [by_mod[id(m)] for m in self.modules]
        owner = self.owner
        prefix = self.sym_prefix
        for m, data in zip(self.modules, results, strict=True):
            if data.error and data.error != _errno.ENOENT:
                self.log(LOG_ERR, f"failed to load symbols from {m.path}: "
                                  f"{_strerror(data.error)}\n")
            m.data = data
            m.info = data.info
            if prefix:
                for name in data.exports:
                    owner[name[1:] if name.startswith(prefix) else name] = m
            else:
                owner.update(dict.fromkeys(data.exports, m))
        if self.check_symvers:
            for m in self.modules:
                assert m.data is not None and m.data.export_crcs is not None
                for name, crc in zip(m.data.exports, m.data.export_crcs, strict=True):
                    self.export_crc[name[1:] if prefix and name.startswith(prefix) else name] \
                        = crc
        if (self.verbose or self.print_unknown or self.check_symvers or prefix
                or any(m.data is not None and m.data.dotted for m in self.modules)):
            self._load_dependencies()
        else:
            self._load_dependencies_fast()
        self._calculate_dependencies()

    def _load_dependencies_fast(self) -> None:
        """Dependencies when no symbol needs reporting: a set intersection per module,
        owners in the order of their first symbol (as kmod appends them)."""
        owner = self.owner
        keys = owner.keys()
        for m in self.modules:
            assert m.data is not None
            names = m.data.dep_names
            if not names:
                continue
            hits = keys & names
            if not hits:
                continue
            if len(hits) == 1:
                owners: Iterable[Mod] = (owner[next(iter(hits))],)
            else:
                owners = dict.fromkeys([owner[n] for n in names if n in hits])
            deps = m.deps
            for o in owners:
                deps.append(o)
                o.users += 1

    def _load_dependencies(self) -> None:
        owner = self.owner
        vmlinux = self.symbols
        export_crc = self.export_crc
        prefix = self.sym_prefix
        check, warn = self.check_symvers, self.print_unknown
        verbose = self.verbose
        for m in self.modules:
            data = m.data
            assert data is not None
            deps = m.deps
            crcs = data.dep_crcs
            weaks = data.dep_weak
            for k, name in enumerate(data.dep_names):
                key = name[1:] if name.startswith(".") else name
                if prefix and key.startswith(prefix):
                    key = key[1:]
                weak = weaks[k] if weaks is not None else False
                o = owner.get(key)
                if o is not None:
                    sym_crc = export_crc.get(key, 0)
                elif key in vmlinux:
                    sym_crc = vmlinux[key].crc
                else:
                    if warn and not weak:
                        self.log(LOG_WARNING, f"{m.path} needs unknown symbol {name}\n")
                    continue
                crc = crcs[k] if crcs is not None else 0
                if check and sym_crc != crc and not weak and warn:
                    self.log(LOG_WARNING, f"{m.path} disagrees about version of symbol "
                                          f"{name}\n")
                if o is None or o in deps:
                    continue
                deps.append(o)
                o.users += 1
                if verbose:
                    self._show(f'{m.path} needs "{key}": {o.path}\n')

    def _calculate_dependencies(self) -> None:
        mods = self.modules
        users = [m.users for m in mods]
        roots = [i for i, u in enumerate(users) if u == 0]
        n_sorted = 0
        while roots:
            src = mods[roots.pop()]
            src.dep_sort_idx = n_sorted
            n_sorted += 1
            for dst in src.deps:
                j = dst.idx
                users[j] -= 1
                if users[j] == 0:
                    roots.append(j)
        if n_sorted < len(mods):
            cycles, count = self._report_cycles(users)
            raise DependencyCycleError(cycles, count)
        for m in mods:
            if len(m.deps) > 1:
                m.deps.sort(key=lambda d: d.dep_sort_idx)

    def _report_cycles(self, users: list[int]) -> tuple[list[list[str]], int]:
        """kmod's cycle report: from each remaining module (array order) walk the
        dependencies depth first; reaching the start module again is a cycle."""
        roots = [m for i, m in enumerate(self.modules) if users[i] > 0]
        in_loops: set[str] = set()
        cycles: list[list[str]] = []
        visited: set[int] = set()
        while roots:
            root = roots.pop(0)
            stack = [_Vertex(root, None)]
            budget = 1 << 20
            while stack and budget:
                budget -= 1
                vertex = stack.pop()
                m = vertex.mod
                if id(m) in visited and m is root:
                    chain: list[Mod] = []
                    p = vertex.parent
                    while p is not None:
                        chain.append(p.mod)
                        p = p.parent
                    for c in chain:
                        in_loops.add(c.modname)
                    names = [c.modname for c in reversed(chain)] + [m.modname]
                    for c in reversed(chain):
                        if c in roots:
                            roots.remove(c)
                    cycles.append(names)
                    self.log(LOG_ERR, "Cycle detected: " + " -> ".join(names) + "\n")
                    continue
                visited.add(id(m))
                if not m.deps:
                    if m in roots:
                        roots.remove(m)
                    continue
                on_path = set()
                p = vertex.parent
                while p is not None:
                    on_path.add(id(p.mod))
                    p = p.parent
                for dep in m.deps:
                    # kmod loops forever on a cycle that does not pass through the root
                    if id(dep) in on_path and dep is not root:
                        continue
                    stack.append(_Vertex(dep, vertex))
        self.log(LOG_ERR, f"Found {len(in_loops)} modules in dependency cycles!\n")
        return cycles, len(in_loops)

    # -- outputs

    def dep_lines(self) -> list[str]:
        """modules.dep lines (without newline), in module order."""
        if self._dep_lines is not None:
            return self._dep_lines
        lines = []
        closure_cache: dict[int, list[Mod]] = {}
        for m in self.modules:
            if not m.deps:
                lines.append(m.out_path + ":")
                continue
            deps = _closure(m, closure_cache)
            lines.append(m.out_path + ": " + " ".join(d.out_path for d in deps))
        self._dep_lines = lines
        return lines

    def output_deps(self) -> bytes:
        return _enc("".join(line + "\n" for line in self.dep_lines()))

    def output_deps_bin(self, layout: Layout = "postorder") -> bytes:
        idx = IndexBuilder()
        if not self.warn_dups:
            idx.extend((m.modname, line, m.idx)
                       for m, line in zip(self.modules, self.dep_lines(), strict=True))
            return idx.to_bytes(layout)
        for m, line in zip(self.modules, self.dep_lines(), strict=True):
            if idx.add(m.modname, line, m.idx):
                self.log(LOG_WARNING, f"duplicate module deps:\n{line}\n")
        return idx.to_bytes(layout)

    def output_aliases(self) -> bytes:
        out = ["# Aliases extracted from modules themselves.\n"]
        for m in self.modules:
            for k, v in m.info:
                if k == "alias":
                    out.append(f"alias {v} {m.modname}\n")
        return _enc("".join(out))

    def output_aliases_bin(self, layout: Layout = "postorder") -> bytes:
        idx = IndexBuilder()
        if not self.warn_dups:
            # a key's values of equal priority come from one module: their order is moot
            entries = []
            for m in self.modules:
                name, prio = m.modname, m.idx
                for k, v in m.info:
                    if k == "alias":
                        if "[" not in v and "]" not in v and len(v) < PATH_MAX:
                            entries.append((v.replace("-", "_"), name, prio))
                            continue
                        alias = alias_normalize(v)
                        if alias is None:
                            self.log(LOG_WARNING, f"Unmatched bracket in {v}\n")
                        else:
                            entries.append((alias, name, prio))
            idx.extend(entries)
            return idx.to_bytes(layout)
        for m in self.modules:
            for k, v in m.info:
                if k != "alias":
                    continue
                alias = alias_normalize(v)
                if alias is None:
                    self.log(LOG_WARNING, f"Unmatched bracket in {v}\n")
                    continue
                if idx.add(alias, m.modname, m.idx) and self.warn_dups:
                    self.log(LOG_WARNING, f"duplicate module alias:\n{alias} {m.modname}\n")
        return idx.to_bytes(layout)

    def output_softdeps(self) -> bytes:
        out = ["# Soft dependencies extracted from modules themselves.\n"]
        for m in self.modules:
            for k, v in m.info:
                if k == "softdep":
                    out.append(f"softdep {m.modname} {v}\n")
        return _enc("".join(out))

    def _owned_symbols(self) -> list[tuple[str, Mod]]:
        """Module-owned symbols in libkmod's hash-table order (2048 buckets)."""
        if self._sorted_symbols is None:
            owner = self.owner
            bucket: dict[str, int] = {}
            if not self.sym_prefix:  # the readers hashed the names of the exports
                for m in self.modules:
                    d = m.data
                    if d is not None and d.export_buckets:
                        bucket.update(zip(d.exports, array("H", d.export_buckets),
                                          strict=True))
            get = bucket.get
            names = sorted(owner, key=lambda n: (get(n), _enc(n)) if n in bucket
                           else hash_order_key(n, 2048))
            self._sorted_symbols = [(n, owner[n]) for n in names]
        return self._sorted_symbols

    def output_symbols(self) -> bytes:
        out = ["# Aliases for symbols, used by symbol_request().\n"]
        for name, owner in self._owned_symbols():
            out.append(f"alias symbol:{name} {owner.modname}\n")
        return _enc("".join(out))

    def output_symbols_bin(self, layout: Layout = "postorder") -> bytes:
        idx = IndexBuilder()
        if not self.warn_dups:  # one value per key: the insertion order is moot
            idx.extend(("symbol:" + n, o.modname, o.idx) for n, o in self.owner.items())
            return idx.to_bytes(layout)
        for name, owner in self._owned_symbols():
            if idx.add("symbol:" + name, owner.modname, owner.idx) and self.warn_dups:
                self.log(LOG_WARNING, f"duplicate module syms:\nsymbol:{name} "
                                      f"{owner.modname}\n")
        return idx.to_bytes(layout)

    def output_builtin_bin(self, layout: Layout = "postorder") -> bytes:
        data = self._read_input("modules.builtin")
        if data is None:
            return b""
        idx = IndexBuilder()
        last: str | None = None
        for raw in fgets_lines(data):
            if not raw[:1].isalpha():
                self.log(LOG_ERR, f"Invalid modules.builtin line: {_dec(raw)}\n")
                continue
            name = _builtin_modname(raw)
            if name is None:  # kmod reuses its buffer: the previous name again
                if last is None:
                    continue
                name = last
            last = name
            idx.add(name, "", 0)
        return idx.to_bytes(layout)

    def output_builtin_alias_bin(self, layout: Layout = "postorder") -> bytes:
        data = self._read_input("modules.builtin.modinfo")
        if data is None:
            return b""
        idx = IndexBuilder()
        for modname, alias in _builtin_aliases(data, self.log):
            norm = alias_normalize(alias)
            if norm is None:
                self.log(LOG_WARNING, f"Unmatched bracket in {alias}\n")
                continue
            idx.add(norm, modname, 0)
        return idx.to_bytes(layout)

    def output_devname(self) -> bytes:
        out: list[str] = []
        for m in self.modules:
            if not any(k == "alias" and v.startswith("devname:") for k, v in m.info):
                continue  # nothing to write for a module without a devname alias
            devname: str | None = None
            kind = ""
            major = minor = 0
            for k, v in m.info:
                if k != "alias":
                    continue
                if v.startswith("devname:"):
                    devname = v[8:]
                else:
                    for prefix, t in (("char-major-", "c"), ("block-major-", "b")):
                        got = _scan_major_minor(v, prefix)
                        if got is not None:
                            kind, (major, minor) = t, got
                            break
                if kind and devname is not None:
                    break
            if devname is None:
                continue
            if kind:
                if not out:
                    out.append("# Device nodes to trigger on-demand module loading.\n")
                out.append(f"{m.modname} {devname} {kind}{major}:{minor}\n")
            else:
                self.log(LOG_ERR, f"Module '{m.modname}' has devname ({devname}) but lacks "
                                  "major and minor information. Ignoring.\n")
        return _enc("".join(out))

    def output(self, name: str, layout: Layout = "postorder") -> bytes:
        """The content of output file ``name``."""
        fn: dict[str, Callable[[], bytes]] = {
            "modules.dep": self.output_deps,
            "modules.dep.bin": lambda: self.output_deps_bin(layout),
            "modules.alias": self.output_aliases,
            "modules.alias.bin": lambda: self.output_aliases_bin(layout),
            "modules.softdep": self.output_softdeps,
            "modules.symbols": self.output_symbols,
            "modules.symbols.bin": lambda: self.output_symbols_bin(layout),
            "modules.builtin.bin": lambda: self.output_builtin_bin(layout),
            "modules.builtin.alias.bin": lambda: self.output_builtin_alias_bin(layout),
            "modules.devname": self.output_devname,
        }
        return fn[name]()

    def show_text(self) -> Iterator[bytes]:
        """What ``depmod -n`` prints: the text outputs in kmod's order."""
        for name in TEXT_OUTPUTS:
            yield self.output(name)

    def write(self, outdir: str | None = None, layout: Layout = "postorder",
              create: bool = False) -> None:
        """Write every output into ``outdir`` (default: the module directory).

        Each file is written under a temporary name (kmod's ``<name>.<pid>.<usec>.<sec>``)
        and renamed in place, in kmod's order, with kmod's messages in kmod's order.  With
        more than one job, a forked helper writes two of the larger files meanwhile.
        """
        dname = outdir or self.dirname
        if create:
            try:
                os.makedirs(dname, mode=0o755, exist_ok=True)
            except OSError as e:
                raise DepmodError(f"could not create directory {dname}: {e.strerror}\n") from e
        try:
            dfd = os.open(dname, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise DepmodError(f"could not open directory {dname}: {e.strerror}\n") from e
        now = time.time()
        sec = int(now)
        stamp = f"{os.getpid()}.{int((now - sec) * 1_000_000)}.{sec}"
        helper_names: tuple[str, ...] = ()
        if self.jobs > 1 and not self.warn_dups and hasattr(os, "fork"):
            # about half the work: everything made of the modules' aliases
            helper_names = ("modules.alias", "modules.alias.bin", "modules.softdep",
                            "modules.devname")
        results: dict[str, _Produced] = {}
        helper: tuple[int, int] | None = None
        try:
            if helper_names:
                helper = _fork_helper(lambda: [self._produce(n, dname, dfd, stamp, layout)
                                               for n in helper_names])
            for name in OUTPUTS:
                if name not in helper_names:
                    results[name] = self._produce(name, dname, dfd, stamp, layout)
            if helper is not None:
                got = _join_helper(helper)
                helper = None
                if got is None:
                    raise DepmodError("an output process failed\n")
                results.update(zip(helper_names, got, strict=True))
            for name in OUTPUTS:
                res = results.pop(name)
                for prio, msg in res.messages:
                    self.log(prio, msg)
                if res.error is not None:
                    raise res.error
                if not res.written:
                    continue
                tmp = f"{name}.{stamp}"
                try:
                    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except OSError as e:
                    _unlink_quiet(tmp, dfd)
                    raise DepmodError(f"renameat({dname}, {tmp}, {dname}, {name}): "
                                      f"{e.strerror}\n") from e
        finally:
            if helper is not None:
                _kill_helper(helper)
            for name in OUTPUTS:  # whatever was not renamed: an error or an interruption
                _unlink_quiet(f"{name}.{stamp}", dfd)
            os.close(dfd)

    def _produce(self, name: str, dname: str, dfd: int, stamp: str, layout: Layout
                 ) -> _Produced:
        """Compute output ``name`` and write it to its temporary file, keeping the
        messages for the caller to print in order."""
        messages: list[tuple[int, str]] = []
        saved = self._log
        self._log = lambda prio, msg: messages.append((prio, msg))
        tmp = f"{name}.{stamp}"
        try:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
            try:
                fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
            except OSError as e:
                self.log(LOG_ERR, f"openat({dname}, {tmp}, {flags:o}, 644): {e.strerror}\n")
                return _Produced(messages, False, None)
            try:
                try:
                    data = self.output(name, layout)
                except IndexError_ as e:
                    return _Produced(messages, False, DepmodError(str(e) + "\n"))
                _write_all(fd, data)
            except DepmodError as e:
                return _Produced(messages, False, e)
            finally:
                os.close(fd)
            return _Produced(messages, True, None)
        finally:
            self._log = saved


class _Produced(NamedTuple):
    messages: list[tuple[int, str]]
    written: bool
    error: DepmodError | None


def _fork_helper(work: Callable[[], object]) -> tuple[int, int]:
    """Run ``work`` in a forked process; (pid, read end of the pipe of its pickled result)."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            payload = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as f:
                f.write(payload)
            code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _join_helper(helper: tuple[int, int]) -> Any:
    """The helper's result, or None if it failed."""
    import pickle

    pid, r = helper
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        return None
    return pickle.loads(payload)


def _kill_helper(helper: tuple[int, int]) -> None:
    pid, r = helper
    with contextlib.suppress(OSError):
        os.close(r)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as e:
            raise DepmodError(f"Could not write index: {e.strerror}\n", LOG_ERR) from e
        view = view[n:]


def _unlink_quiet(name: str, dfd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dfd)


def _read_file(name: str, dir_fd: int | None = None) -> bytes:
    """A whole input file; a FIFO or device reads as whatever it has now (kmod would
    block on a FIFO without a writer)."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                return os.read(fd, 1 << 20)
            except BlockingIOError:
                return b""
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _default_jobs() -> int:
    """Processes for reading modules: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _fake_fd(depth: int) -> int:
    """The descriptor number kmod's message would show for a directory at ``depth``."""
    return 2 + depth


def _starts_with_dir(path: str, pathlen: int, prefix: str) -> bool:
    n = len(prefix)
    return pathlen > n and path[n:n + 1] == "/" and path.startswith(prefix)


def _closure(m: Mod, cache: dict[int, list[Mod]]) -> list[Mod]:
    """Every module ``m`` depends on, directly or not, nearest (lowest dep_sort_idx) first."""
    seen: set[int] = set()
    out: list[Mod] = []
    stack = list(reversed(m.deps))
    while stack:
        d = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        out.append(d)
        stack.extend(reversed(d.deps))
    out.sort(key=lambda d: d.dep_sort_idx)
    return out


def _builtin_modname(line: bytes) -> str | None:
    """path_to_modname of a modules.builtin line (its newline kept, as fgets gives it)."""
    base = line[line.rfind(b"/") + 1:]
    if not base:
        return None
    dot = base.find(b".")
    if dot >= 0:
        base = base[:dot]
    return _dec(base[:PATH_MAX - 1]).replace("-", "_")


def _builtin_aliases(data: bytes, log: LogFn) -> Iterator[tuple[str, str]]:
    """(module, alias) pairs of modules.builtin.modinfo (``module.key=value\\0`` records),
    read with kmod's stream rules."""
    pos, n = 0, len(data)
    size = PATH_MAX

    def field_to(end: int) -> tuple[bytes, int]:
        """flush_stream_to: the bytes before ``end`` (or NUL/EOF); (b"", ...) if the stop
        was not ``end``.  Returns (value, length) with length 0 meaning 'nothing'."""
        nonlocal pos
        start = pos
        stop = n
        e = data.find(bytes((end,)), start, start + size + 1) if end else -1
        z = data.find(b"\0", start, start + size + 1)
        for cand in (e, z):
            if 0 <= cand < stop:
                stop = cand
        if stop - start > size - 1 and stop - start >= size:
            # the buffer filled up: size bytes stored, one more read
            got = data[start:start + size]
            extra = data[start + size:start + size + 1]
            pos = start + size + 1
            log(LOG_WARNING, f"Could not flush stream: {_errno.ENOSPC}. Partial content: "
                             f"{_dec(got)}\n")
            if extra and extra[0] == end:
                return got[:size - 1], size - 1
            return b"", 0
        got = data[start:stop]
        if stop < n:
            pos = stop + 1
            if data[stop] == end:
                return got, len(got)
            return b"", 0
        pos = n
        return b"", 0

    def flush(end: int) -> None:
        nonlocal pos
        z = data.find(b"\0", pos)
        pos = n if z < 0 else z + 1

    while pos < n:
        modname, ln = field_to(0x2E)  # '.'
        if not ln:
            continue
        key, _ = field_to(0x3D)  # '='
        if key != b"alias":
            flush(0)
            continue
        value, ln = field_to(0)
        if not ln:
            continue
        yield _dec(modname), _dec(value)


def _scan_major_minor(value: str, prefix: str) -> tuple[int, int] | None:
    """sscanf(value, "<prefix>%u-%u") == 2."""
    if not value.startswith(prefix):
        return None
    m = re.match(r"\s*([+-]?)(\d+)-\s*([+-]?)(\d+)", value[len(prefix):])
    if m is None:
        return None
    return _scanf_u(m.group(1), m.group(2)), _scanf_u(m.group(3), m.group(4))


def _scanf_u(sign: str, digits: str) -> int:
    v = int(digits)
    if v > 0xFFFFFFFFFFFFFFFF:
        v = 0xFFFFFFFFFFFFFFFF
    if sign == "-":
        v = (-v) & 0xFFFFFFFFFFFFFFFF
    return v & 0xFFFFFFFF


# --------------------------------------------------------------------------- reading in parallel


def _read_all(paths: list[str], detail: bool, jobs: int,
              meanwhile: Callable[[], None] | None = None,
              skip: frozenset[str] = frozenset()) -> list[ModuleData]:
    """read_module_data for every path (those in ``skip`` fail with EINVAL unread),
    split over ``jobs`` processes (fork); the main process runs ``meanwhile`` once the
    others have started."""
    if skip:
        todo = [p for p in paths if p not in skip]
        got = iter(_read_all(todo, detail, jobs, meanwhile))
        return [_failed(_errno.EINVAL) if p in skip else next(got) for p in paths]
    if jobs <= 1 or len(paths) < 64 or not hasattr(os, "fork"):
        if meanwhile is not None:
            meanwhile()
        return [read_module_data(p, detail) for p in paths]
    import pickle

    # a work queue: chunk numbers in a pipe, each read of 4 bytes takes one (reads of a
    # pipe are atomic), so that whichever process is free takes the next chunk
    size = max(16, -(-len(paths) // 8192))
    chunks = -(-len(paths) // size)
    queue_r, queue_w = os.pipe()
    try:
        os.write(queue_w, struct.pack(f"<{chunks}I", *range(chunks)))
    finally:
        os.close(queue_w)

    def take() -> Iterator[int]:
        while True:
            got = os.read(queue_r, 4)
            if len(got) < 4:
                return
            yield struct.unpack("<I", got)[0]

    results: list[ModuleData | None] = [None] * len(paths)
    children: list[tuple[int, int]] = []  # (pid, read end of its result pipe)
    try:
        for _w in range(1, jobs):
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # a reader: take chunks, send what it read pickled, exit
                code = 1
                try:
                    os.close(r)
                    # each chunk pickled as soon as read: the pickling is shared out
                    # with the reading instead of delaying the end
                    mine = [pickle.dumps((c, [_pack(read_module_data(p, detail))
                                              for p in paths[c * size:(c + 1) * size]]),
                                         protocol=pickle.HIGHEST_PROTOCOL) for c in take()]
                    with os.fdopen(wfd, "wb") as f:
                        f.writelines(mine)
                    code = 0
                except BaseException:
                    pass
                finally:
                    os._exit(code)
            os.close(wfd)
            children.append((pid, r))
        if meanwhile is not None:
            meanwhile()
        for c in take():
            for k in range(c * size, min((c + 1) * size, len(paths))):
                results[k] = read_module_data(paths[k], detail)
        for pid, r in children:
            with os.fdopen(r, "rb") as rf:
                payload = rf.read()
            _, status = os.waitpid(pid, 0)
            if status != 0 or not payload:
                raise DepmodError("a module reader process failed\n", LOG_CRIT)
            stream = io.BytesIO(payload)
            while stream.tell() < len(payload):
                c, packed = pickle.load(stream)
                results[c * size:c * size + len(packed)] = [_unpack(t) for t in packed]
    except BaseException:
        for pid, _r in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        raise
    finally:
        os.close(queue_r)
    out: list[ModuleData] = []
    for d in results:
        assert d is not None
        out.append(d)
    return out


def _pack(d: ModuleData) -> tuple[object, ...]:
    """ModuleData for the pipe: name lists joined (one string pickles much faster)."""
    return ("\0".join(d.exports), d.export_crcs, "\0".join(d.dep_names), d.dep_crcs,
            d.dep_weak, d.dotted, d.info, d.error, d.export_buckets)


def _unpack(t: tuple[Any, ...]) -> ModuleData:
    exports, export_crcs, dep_names, dep_crcs, dep_weak, dotted, info, error, buckets = t
    return ModuleData(exports.split("\0") if exports else [], export_crcs,
                      dep_names.split("\0") if dep_names else [], dep_crcs, dep_weak, dotted,
                      info, error, buckets)


# --------------------------------------------------------------------------- -A


def depfile_up_to_date(dirname: str, log: LogFn) -> int:
    """1 if no module file is newer than modules.dep, 0 if one is, < 0 on error."""
    try:
        st = os.stat(os.path.join(dirname, "modules.dep"))
    except OSError as e:
        try:
            os.listdir(dirname)
        except OSError as e2:
            log(LOG_ERR, f"could not open directory {dirname}: {e2.strerror}\n")
            return -(e2.errno or 1)
        log(LOG_ERR, f"could not fstatat({dirname}, modules.dep): {e.strerror}\n")
        return -(e.errno or 1)
    mtime = int(st.st_mtime)

    def walk(d: str) -> int:
        err = 1
        try:
            entries = list(os.scandir(d))
        except OSError:
            return 1
        for entry in entries:
            name = entry.name
            if name in ("build", "source"):
                continue
            try:
                est = entry.stat()
            except OSError as e:
                log(LOG_ERR, f"fstatat({_fake_fd(1)}, {name}): {e.strerror}\n")
                continue
            if stat.S_ISDIR(est.st_mode):
                err = walk(entry.path)
            elif stat.S_ISREG(est.st_mode):
                if not _has_kmod_ext(name):
                    continue
                err = 1 if int(est.st_mtime) <= mtime else 0
            else:
                log(LOG_ERR, f"unsupported file type {entry.path}: "
                             f"{est.st_mode & 0o170000:o}\n")
                continue
            if err == 0:
                break
            if err < 0:
                err = 1
        return err

    return walk(dirname)


def default_kversion() -> str:
    return os.uname().release


__all__ = ["OUTPUTS", "DependencyCycleError", "Depmod", "DepmodConfig", "DepmodError", "Layout",
           "alias_normalize", "depfile_up_to_date", "load_config", "superfast_hash"]

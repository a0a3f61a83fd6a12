"""What depmod reads from one module file: exports, dependency symbols, alias/softdep.

libkmod's readers for depmod (libkmod/libkmod-elf.c: kmod_elf_get_symbols,
kmod_elf_get_dependency_symbols, kmod_elf_get_modinfo_strings) give:

* exports: the ``__crc_`` symbols (prefix stripped), else the strings of
  ``__ksymtab_strings``;
* dependency symbols: the undefined ``.symtab`` symbols in table order, then the
  ``__versions`` entries no undefined symbol matched;
* the ``alias`` and ``softdep`` entries of ``.modinfo``, in order.

The file is opened (and decompressed) by :class:`lkm.module.ModuleFile`; the symbol
table is read here, column-wise (one slice per field over the whole table, no object
per symbol), for the common case of ELF64 little endian with ASCII names.  This is the
one place that reads a module for depmod, kept beside ModuleFile's own symbol methods
because depmod reads every symbol table of a tree: on the 6.1 tree (4,023 modules,
828,500 symbols) this reader takes 0.32 s of CPU beyond opening the files, and hashes
the export names for modules.symbols on the way; through ModuleFile
(:func:`_general_module_data`, used for anything else and for the error reports) it
takes 0.45 s without the hashes: 0.13 s more, some 15% of a whole run's CPU.
"""

from __future__ import annotations

import errno as _errno
import re
from array import array
from typing import TYPE_CHECKING, NamedTuple

from lkm.depmod.hash import superfast_hash
from lkm.errors import FormatError

if TYPE_CHECKING:
    from lkm.module import ModuleFile

_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1
_SH_OFFSET, _SH_SIZE = 4, 5  # fields of ElfFile.section_header
_ALL_ONES = 0xFFFFFFFFFFFFFFFF


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


def failed(err: int) -> ModuleData:
    """The data of a module that could not be read (errno ``err``)."""
    return ModuleData([], None, [], None, None, False, [], err)


def read_module_data(path: str, detail: bool = False) -> ModuleData:
    """Exports, dependency symbols and alias/softdep modinfo of the module at ``path``,
    as libkmod reads them for depmod; ``detail`` adds CRCs and weak flags.  Never
    raises: a file that cannot be read gives :func:`failed` data with its errno."""
    from lkm.module import ModuleFile

    try:
        m = ModuleFile.open(path)
    except OSError as e:
        return failed(e.errno if e.errno is not None else _errno.EIO)
    except FormatError as e:
        return failed(e.errno)
    if m.compression is None and len(m.content) < 6:
        m.close()
        return failed(_errno.EINVAL)  # libkmod reads 6 magic bytes before anything else
    try:
        try:
            elf = m.elf
        except FormatError as e:
            return failed(e.errno)
        if elf.elfclass == 64 and elf.little_endian:
            fast = _fast_module_data(m, detail)
            if fast is not None:
                return fast
        return _general_module_data(m, detail)
    finally:
        m.close()


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
    st_names = words[6::6]  # st_name of symbols 1..n-1
    if pos >= 0 and st_names and max(st_names) >= ntext:
        pos = -1  # kmod_elf_get_symbols: a name outside .strtab sends it to the fallback
    if pos >= 0:
        names_col = st_names.tobytes()  # 4 bytes each
        while pos >= 0:
            key = pos.to_bytes(4, "little")
            at = names_col.find(key)
            while at > 0 and at & 3:  # a match across two st_name fields: look further
                at = names_col.find(key, at + 1)
            if at >= 0:
                exports.append(text[pos + 6:index("\0", pos)])
                if export_crcs is not None:
                    i = (at >> 2) + 1
                    export_crcs.append(_resolve_crc(
                        m, tab[i * 24 + 6] | tab[i * 24 + 7] << 8,
                        int.from_bytes(tab[i * 24 + 8:i * 24 + 16], "little")))
            pos = text.find("__crc_", pos + 1)
    if not exports and ksymtab_strings is not None:
        exports = [x.decode("utf-8", "surrogateescape")
                   for x in bytes(ksymtab_strings).split(b"\0") if x]
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
    buckets = array("H", [superfast_hash(n.encode("utf-8", "surrogateescape")) & 2047
                          for n in exports]).tobytes()
    return ModuleData(exports, export_crcs, dep_names, dep_crcs, dep_weak, dotted, info, 0,
                      buckets)


def _resolve_crc(m: ModuleFile, shndx: int, value: int) -> int:
    """kmod_elf_resolve_crc of a ``__crc_`` symbol: its value itself when absolute or
    undefined, else the u32 (ELF byte order) it points at in section ``shndx``; all ones
    when that lies outside the section or the file."""
    if shndx in (_SHN_UNDEF, _SHN_ABS):
        return value
    elf = m.elf
    if shndx >= elf.e_shnum:
        return _ALL_ONES
    h = elf.section_header(shndx)
    if value > (h[_SH_SIZE] - 4) % (1 << 64):
        return _ALL_ONES
    off = h[_SH_OFFSET] + value
    raw = memoryview(m.content)[off:off + 4]
    if len(raw) < 4:  # elf_get_uint's answer to an offset past the end
        return _ALL_ONES
    return int.from_bytes(raw, "little" if elf.little_endian else "big")


def _general_module_data(m: ModuleFile, detail: bool) -> ModuleData:
    """Any other module (ELF32, big endian, non-ASCII names), through ModuleFile."""
    exports = _exports(m, detail)
    deps = _dependency_symbols(m)
    try:
        info = [(k, v) for k, v in m.modinfo if k == "alias" or k == "softdep"]
    except FormatError:
        info = []
    names = [n for n, _w in exports]
    dep_names = [n for n, _c, _w in deps]
    return ModuleData(names, [c for _n, c in exports] if detail else None, dep_names,
                      [c for _n, c, _w in deps] if detail else None,
                      [w for _n, _c, w in deps] if detail else None,
                      any(n.startswith(".") for n in dep_names), info)


def _exports(m: ModuleFile, want_crcs: bool) -> list[tuple[str, int]]:
    """kmod_elf_get_symbols: ModuleFile.export_names_for_depmod (``__crc_<sym>`` symbols,
    else the strings of ``__ksymtab_strings``), with the ``__crc_`` CRCs resolved when
    wanted (CRC 0 otherwise)."""
    names = m.export_names_for_depmod()
    if want_crcs:
        try:
            crcs = [(s.name[6:], _resolve_crc(m, s.shndx, s.value))
                    for s in m.elf.symbols()[1:] if s.name.startswith("__crc_")]
        except FormatError:
            crcs = []
        if crcs:
            return crcs
    return [(n, 0) for n in names]


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

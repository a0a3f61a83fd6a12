"""ModuleFile: what a .ko file says about itself.

Everything is parsed lazily and once: ``.modinfo``, parameters, ``__versions``,
exports (``__ksymtab*``), undefined symbols, the appended signature and
``.gnu.linkonce.this_module``.  Strings are decoded as UTF-8 with
``surrogateescape`` so that any byte string round-trips through ``str``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from lkm import compress
from lkm.elf import (
    ET_REL,
    SHF_ALLOC,
    SHN_ABS,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_REL,
    STB_WEAK,
    ElfFile,
    Symbol,
)
from lkm.errors import ElfError
from lkm.kmod.names import modname_from_path as _modname

if TYPE_CHECKING:
    from lkm.signature import ModuleSignature

Buffer = bytes | bytearray | memoryview | mmap.mmap

# e_machine values whose struct kernel_symbol uses 32-bit place-relative offsets
_PREL32_MACHINES = frozenset({62, 183, 21, 243, 258})
MODVERSION_ENTRY_SIZE = 64


def modname_from_path(path: str | os.PathLike[str]) -> str:
    """kmod's module name of a file ("" for an empty basename): lkm.kmod.names."""
    return _modname(os.fspath(path)) or ""


def _dec(b: bytes | memoryview) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def kmod_strings(data: bytes) -> list[bytes]:
    """libkmod-elf.c kmod_elf_get_strings: the NUL-separated strings of a section (.modinfo,
    __ksymtab_strings), runs of NULs skipped; nothing when a single byte is left after
    the leading NULs."""
    stripped = data.lstrip(b"\0")
    if len(stripped) <= 1:
        return []
    return [s for s in stripped.split(b"\0") if s]


class Param(NamedTuple):
    """A module parameter from ``parm=name:description`` and ``parmtype=name:type``."""

    name: str
    type: str | None
    description: str | None


class Export(NamedTuple):
    """An exported symbol: ``gpl`` from __ksymtab_gpl, namespace "" when none, crc if known."""

    name: str
    gpl: bool
    namespace: str
    crc: int | None


class ThisModule(NamedTuple):
    """The module's ``struct module`` (.gnu.linkonce.this_module): its size and name field."""

    size: int
    name: str


class ModuleFile:
    """A kernel module's (decompressed) content, parsed on demand: lkm's reader of a
    ``.ko`` (the kernel's view of it; kmod's view of the same file is
    :mod:`lkm.kmod.file`).

    :param content: the uncompressed module image (bytes, or a mapping of the file).
    :param path: the file it came from, if any (names the module when .modinfo has no
        ``name=``).
    :param compression: ``"gzip"``, ``"xz"``, ``"zstd"`` when it was decompressed.

    Use :meth:`open` for a file (any compression) or :meth:`from_bytes`.  Malformed
    content raises FormatError subclasses (ElfError, CompressionError,
    SignatureError) when the affected property is first read.
    """

    def __init__(self, content: Buffer, path: str | None = None,
                 compression: str | None = None) -> None:
        self.content = content
        self.path = path
        self.compression = compression

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ModuleFile:
        """Read a module file.

        :param path: a ``.ko`` file, compressed (gzip, xz, zstd, by magic) or not.
        :returns: the module, mapped if uncompressed, else decompressed in memory.
        :raises OSError: the file cannot be read.
        :raises CompressionError: a compressed stream is corrupt or too large.
        """
        content, kind = compress.read_module(path)
        return cls(content, os.fspath(path), kind)

    @classmethod
    def from_bytes(cls, data: Buffer, path: str | None = None) -> ModuleFile:
        """A module from memory.

        :param data: the module image; compressed data (by magic) is decompressed.
        :param path: the name to give it, if any.
        :raises CompressionError: a compressed stream is corrupt or too large.
        """
        kind = compress.detect(data)
        if kind is not None:
            data = compress.decompress(data, kind)
        return cls(data, path, kind)

    def close(self) -> None:
        """Release the mapping of an uncompressed file (the object is unusable afterwards).

        If views of it are still held elsewhere, the mapping goes when they do.
        """
        c = self.content
        if isinstance(c, mmap.mmap):
            self.__dict__.pop("elf", None)
            with contextlib.suppress(BufferError):
                c.close()

    def __enter__(self) -> ModuleFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModuleFile({self.path or '<bytes>'!r})"

    # -- ELF ------------------------------------------------------------------------------

    @cached_property
    def elf(self) -> ElfFile:
        return ElfFile(self.content)

    @cached_property
    def name(self) -> str:
        """The ``.modinfo`` name, else the name derived from the file name."""
        n = self.get_first("name")
        if n is not None:
            return n
        if self.path is not None:
            return modname_from_path(self.path)
        raise ElfError("module has no name (no .modinfo name= and no path)")

    # -- .modinfo -------------------------------------------------------------------------

    @property
    def has_modinfo(self) -> bool:
        """True when there is a ``.modinfo`` section (kmod's modinfo fails with ENOENT if not)."""
        return self.elf.section_index(".modinfo") is not None

    @cached_property
    def modinfo(self) -> list[tuple[str, str]]:
        """``.modinfo`` (key, value) pairs in file order.

        Strings are split at runs of NULs (padding skipped); an entry without '='
        gives (entry, "") as kmod does.  No section: [].
        """
        data = self.elf.section_bytes(".modinfo")
        if data is None:
            return []
        out = []
        for s in _dec(data).split("\0"):
            if s:
                k, _, v = s.partition("=")
                out.append((k, v))
        return out

    def get(self, key: str) -> list[str]:
        """Every value of ``key`` in ``.modinfo``, in file order."""
        return [v for k, v in self.modinfo if k == key]

    def get_first(self, key: str) -> str | None:
        """The first value of ``key``, or None."""
        for k, v in self.modinfo:
            if k == key:
                return v
        return None

    @property
    def vermagic(self) -> str | None:
        return self.get_first("vermagic")

    @property
    def license(self) -> str | None:
        return self.get_first("license")

    @property
    def srcversion(self) -> str | None:
        return self.get_first("srcversion")

    @property
    def depends(self) -> list[str]:
        """The ``depends=`` list ("depends=" alone -> [])."""
        v = self.get_first("depends")
        return [d for d in v.split(",") if d] if v else []

    @property
    def aliases(self) -> list[str]:
        return self.get("alias")

    @property
    def softdeps(self) -> list[str]:
        """Raw ``softdep=`` values ("pre: a b post: c")."""
        return self.get("softdep")

    @property
    def import_ns(self) -> list[str]:
        return self.get("import_ns")

    @property
    def intree(self) -> bool:
        return self.get_first("intree") == "Y"

    @property
    def retpoline(self) -> bool:
        return self.get_first("retpoline") == "Y"

    @property
    def staging(self) -> bool:
        return self.get_first("staging") == "Y"

    @cached_property
    def params(self) -> list[Param]:
        """Parameters merged from ``parm=``/``parmtype=`` in order of first appearance.

        Entries without ':' are skipped (kmod's modinfo reports and skips them).
        """
        order: list[str] = []
        types: dict[str, str] = {}
        descs: dict[str, str] = {}
        for k, v in self.modinfo:
            if k == "parm":
                table = descs
            elif k == "parmtype":
                table = types
            else:
                continue
            name, colon, rest = v.partition(":")
            if not colon:
                continue
            if name not in types and name not in descs:
                order.append(name)
            table.setdefault(name, rest)
        return [Param(n, types.get(n), descs.get(n)) for n in order]

    # -- symbols --------------------------------------------------------------------------

    @cached_property
    def _undefined(self) -> list[tuple[str, int]]:
        return self.elf.undefined_symbols_with_bind()

    @property
    def undefined_symbols(self) -> list[str]:
        """Names of undefined ``.symtab`` symbols in table order (null and empty names left out)."""
        return [n for n, _ in self._undefined]

    @property
    def weak_undefined(self) -> set[str]:
        """The undefined symbols bound STB_WEAK."""
        return {n for n, b in self._undefined if b == STB_WEAK}

    @cached_property
    def versions(self) -> list[tuple[str, int]]:
        """``__versions`` (symbol, CRC) entries: 64 bytes each, the CRC an unsigned long.

        Names are kept as stored (kmod's depmod strips a leading '.').  ElfError if
        the section size is not a multiple of 64.
        """
        data = self.elf.section_bytes("__versions")
        if data is None or len(data) == 0:
            return []
        if len(data) % MODVERSION_ENTRY_SIZE:
            raise ElfError(f"__versions size {len(data):#x} is not a multiple of "
                           f"{MODVERSION_ENTRY_SIZE}")
        crclen = self.elf.pointer_size
        raw = bytes(data)
        count = len(raw) // MODVERSION_ENTRY_SIZE
        e = "<" if self.elf.little_endian else ">"
        fmt = e + ("I60s" if crclen == 4 else "Q56s") * count
        flat = struct.unpack(fmt, raw)
        names = [n.split(b"\0", 1)[0] for n in flat[1::2]]
        if b"".join(names).isascii():
            texts = [n.decode("ascii") for n in names]
        else:
            texts = [_dec(n) for n in names]
        return list(zip(texts, flat[0::2], strict=True))

    @cached_property
    def extended_versions(self) -> list[tuple[str, int]] | None:
        """CONFIG_EXTENDED_MODVERSIONS (Linux 6.13+) entries: ``__version_ext_names``
        (NUL-terminated names) paired with ``__version_ext_crcs`` (u32), or None when
        the module has none.  Kept apart from :attr:`versions`, which kmod 30 reads."""
        elf = self.elf
        names = elf.section_bytes("__version_ext_names")
        crcs = elf.section_bytes("__version_ext_crcs")
        if names is None or crcs is None:
            return None
        if len(crcs) % 4:
            raise ElfError(f"__version_ext_crcs size {len(crcs):#x} is not a multiple of 4")
        raw = bytes(names)
        if raw and raw[-1] != 0:
            raise ElfError("__version_ext_names does not end with a NUL")
        texts = [_dec(n) for n in raw.split(b"\0")[:-1]] if raw else []
        values = [v for (v,) in struct.iter_unpack(("<" if elf.little_endian else ">") + "I",
                                                   crcs)]
        if len(texts) != len(values):
            raise ElfError(f"__version_ext_names has {len(texts)} names for {len(values)} "
                           "CRCs")
        return list(zip(texts, values, strict=True))

    def kmod_exports(self) -> list[tuple[str, int]] | None:
        """The exported symbols as kmod reads them (libkmod-elf.c kmod_elf_get_symbols, which
        kmod_module_get_symbols and depmod use): THE rule.

        :returns: (name, CRC) of every ``__crc_<name>`` symbol in table order if there is
            one, the CRC resolved as kmod_elf_resolve_crc does (the symbol's value for
            SHN_ABS or SHN_UNDEF, else the u32 at that offset of its section, 2**64 - 1
            when it does not fit); else every string of ``__ksymtab_strings`` with CRC 0
            (:func:`kmod_strings`); None when there is neither (libkmod: -ENOENT).
        """
        return self._kmod_exports(True)

    def export_names_for_depmod(self) -> list[str]:
        """The names of :meth:`kmod_exports` (no CRCs read), [] when there are none."""
        return [name for name, _crc in self._kmod_exports(False) or ()]

    def _kmod_exports(self, crcs: bool) -> list[tuple[str, int]] | None:
        elf = self.elf
        try:
            if crcs:
                found = [(s.name[6:], self._kmod_crc(s)) for s in
                         map(elf.symbol, elf.symbol_indexes_with_prefix(b"__crc_"))]
            else:
                found = [(n[6:], 0) for n in elf.symbol_names_with_prefix(b"__crc_")]
        except ElfError:
            found = []  # libkmod falls back to __ksymtab_strings
        if found:
            return found
        try:
            data = elf.section_bytes("__ksymtab_strings")
        except ElfError:
            return None
        if data is None:
            return None
        return [(_dec(s), 0) for s in kmod_strings(bytes(data))]

    def _kmod_crc(self, sym: Symbol) -> int:
        """kmod_elf_resolve_crc: the CRC a ``__crc_`` symbol stands for."""
        if sym.shndx in (SHN_UNDEF, SHN_ABS):
            return sym.value
        try:
            size = self.elf.section_header(sym.shndx)[5]
            if sym.value > (size - 4) & 0xFFFFFFFFFFFFFFFF:
                return 0xFFFFFFFFFFFFFFFF
            data = bytes(self.elf.section_data(sym.shndx)[sym.value:sym.value + 4])
        except ElfError:
            return 0xFFFFFFFFFFFFFFFF
        return int.from_bytes(data.ljust(4, b"\0"),
                              "little" if self.elf.little_endian else "big")

    @cached_property
    def exports(self) -> list[Export]:
        """Exported symbols: __ksymtab then __ksymtab_gpl, each in table order.

        Each ``struct kernel_symbol`` is read the kernel's way, through the
        relocations of its name and namespace fields (in a linked image without
        relocations, through its PREL32 offsets or pointers).  Without relocations
        in a relocatable file, the local ``__ksymtab_<sym>``/``__kstrtabns_<sym>``
        symbols name them.  CRCs come from ``__crc_<sym>`` symbols, else __kcrctab*
        by index.
        """
        elf = self.elf
        tables = (elf.section_index("__ksymtab"), elf.section_index("__ksymtab_gpl"))
        if tables == (None, None):
            return []
        crcsyms: dict[str, tuple[int, int]] = {}
        for i in elf.symbol_indexes_with_prefix(b"__crc_"):
            s = elf.symbol(i)
            crcsyms.setdefault(s.name[6:], (s.shndx, s.value))
        crctabs = (elf.section_index("__kcrctab"), elf.section_index("__kcrctab_gpl"))
        out = []
        for gpl, idx in enumerate(tables):
            if idx is None:
                continue
            for n, (name, ns) in enumerate(self._ksymtab_entries(idx)):
                crc = None
                if name in crcsyms:
                    crc = self._crc_at(*crcsyms[name])
                else:
                    tab = crctabs[gpl]
                    if tab is not None and (n + 1) * 4 <= elf.section_header(tab)[5]:
                        crc = self._crc_at(tab, n * 4)
                out.append(Export(name, bool(gpl), ns, crc))
        return out

    def _ksymtab_entries(self, idx: int) -> list[tuple[str, str]]:
        """(name, namespace) of each struct kernel_symbol in section ``idx``."""
        elf = self.elf
        size = elf.section_header(idx)[5]
        relsecs = [(elf.section_header(i)[1] == SHT_REL, elf.relocations(i))
                   for i in elf.relocation_sections_for(idx)]
        if relsecs:
            nsyms = elf.symbol_count()
            field = 4 if elf.elfclass == 32 or any(r.offset % 8 == 4 for _, rels in relsecs
                                                   for r in rels) else 8
            data = elf.section_data(idx)
            strings: dict[int, str] = {}
            for implicit, rels in relsecs:
                for r in rels:
                    if r.offset % field or (r.offset // field) % 3 == 0:
                        continue  # the value field, or misaligned
                    if r.symbol >= nsyms:
                        raise ElfError(f"relocation of __ksymtab names symbol {r.symbol}, "
                                       f"beyond the {nsyms} symbols")
                    s = elf.symbol(r.symbol)
                    addend = elf.read_uint(data, r.offset, field) if implicit else r.addend
                    strings[r.offset] = self._string_at(s.shndx, s.value + addend)
            entsize = 3 * field
            return [(strings[off + field], strings.get(off + 2 * field, ""))
                    for off in range(0, size - size % entsize, entsize)
                    if off + field in strings]
        if elf.e_type == ET_REL:
            return self._ksymtab_entries_by_symbols(idx, elf.symbols())
        return self._ksymtab_entries_linked(idx)

    def _ksymtab_entries_by_symbols(self, idx: int, syms: list[Symbol]
                                    ) -> list[tuple[str, str]]:
        """Entries named by the local ``__ksymtab_<sym>`` and ``__kstrtabns_<sym>`` symbols."""
        entries = sorted((s.value, s.name[10:]) for s in syms
                         if s.shndx == idx and s.name.startswith("__ksymtab_"))
        nss = {s.name[12:]: (s.shndx, s.value) for s in syms
               if s.name.startswith("__kstrtabns_")}
        return [(nm, self._string_at(*nss[nm]) if nm in nss else "") for _, nm in entries]

    def _ksymtab_entries_linked(self, idx: int) -> list[tuple[str, str]]:
        """Entries of a linked image: PREL32 offsets (x86_64, arm64, ppc64, riscv,
        loongarch) or absolute pointers, resolved through the section addresses."""
        elf = self.elf
        prel32 = elf.elfclass == 64 and elf.e_machine in _PREL32_MACHINES
        field = 4 if prel32 or elf.elfclass == 32 else 8
        entsize = 3 * field
        data = elf.section_data(idx)
        base = elf.section_header(idx)[3]
        fmt = ("<" if elf.little_endian else ">") + ("iii" if prel32 else
                                                      "III" if field == 4 else "QQQ")
        # names and namespaces normally all sit in __ksymtab_strings: decode it once
        sidx = elf.section_index("__ksymtab_strings")
        sbase, text = 0, ""
        if sidx is not None:
            sbase = elf.section_header(sidx)[3]
            text = _dec(elf.section_data(sidx))

        def string(addr: int) -> str | None:
            o = addr - sbase
            if 0 <= o < len(text):
                end = text.find("\0", o)
                return text[o:end] if end >= 0 else text[o:]
            return self._string_at_address(addr)

        out = []
        whole = len(data) - len(data) % entsize
        for n, (_value, name_ref, ns_ref) in enumerate(struct.iter_unpack(fmt, data[:whole])):
            entry = base + n * entsize
            name_addr = entry + field + name_ref if prel32 else name_ref
            name = string(name_addr)
            if name is None:
                raise ElfError(f"__ksymtab entry {n}: name address {name_addr:#x} is in no "
                               "section")
            ns = ""
            if ns_ref:
                ns = string(entry + 2 * field + ns_ref if prel32 else ns_ref) or ""
            out.append((name, ns))
        return out

    def _string_at_address(self, addr: int) -> str | None:
        """The string at virtual address ``addr`` of a linked image, or None."""
        elf = self.elf
        for i in range(1, elf.e_shnum):
            h = elf.section_header(i)
            if h[2] & SHF_ALLOC and h[3] <= addr < h[3] + h[5] and h[1] != SHT_NOBITS:
                return self._string_at(i, addr - h[3])
        return None

    def _string_at(self, shndx: int, value: int) -> str:
        """The NUL-terminated string at ``value`` in section ``shndx`` ("" for UNDEF/ABS)."""
        if shndx in (SHN_UNDEF, SHN_ABS) or shndx >= self.elf.e_shnum:
            return ""
        data = self.elf.section_data(shndx)
        if not 0 <= value < len(data):
            raise ElfError(f"string offset {value:#x} is outside section {shndx} "
                           f"({len(data):#x} bytes)")
        end = bytes(data[value:value + 4096]).find(b"\0")
        if end < 0:
            raw = bytes(data[value:])
            end = raw.find(b"\0")
            return _dec(raw[:end if end >= 0 else len(raw)])
        return _dec(data[value:value + end])

    def _crc_at(self, shndx: int, value: int) -> int | None:
        """A 32-bit CRC at ``value`` in section ``shndx`` (SHN_ABS: the value itself)."""
        if shndx == SHN_ABS:
            return value & 0xFFFFFFFF
        if shndx == SHN_UNDEF or shndx >= self.elf.e_shnum:
            return None
        return self.elf.read_uint(self.elf.section_data(shndx), value, 4)

    # -- signature ------------------------------------------------------------------------

    @cached_property
    def _signature_split(self) -> tuple[int, ModuleSignature | None]:
        from lkm import signature

        return signature.split(memoryview(self.content))

    @property
    def signature(self) -> ModuleSignature | None:
        """The appended signature (SignatureError if malformed), None when unsigned."""
        return self._signature_split[1]

    @property
    def signature_offset(self) -> int:
        """Length of the module without its signature trailer."""
        return self._signature_split[0]

    @property
    def body(self) -> bytes:
        """The module content without the appended signature."""
        return bytes(self.content[:self.signature_offset])

    # -- .gnu.linkonce.this_module --------------------------------------------------------

    @property
    def this_module(self) -> ThisModule | None:
        """``struct module`` basics (size, name), or None without the section."""
        size = self.this_module_size
        if size is None:
            return None
        name = self.this_module_name
        assert name is not None
        return ThisModule(size, name)

    @property
    def this_module_size(self) -> int | None:
        """Size of ``struct module`` (the .gnu.linkonce.this_module section), or None."""
        s = self.elf.section(".gnu.linkonce.this_module")
        return None if s is None else s.size

    @property
    def this_module_name(self) -> str | None:
        """``struct module``'s name field (after state and the list_head), or None."""
        data = self.elf.section_bytes(".gnu.linkonce.this_module")
        if data is None:
            return None
        ptr = self.elf.pointer_size
        start, length = 3 * ptr, 64 - ptr
        if len(data) < start + length:
            raise ElfError(".gnu.linkonce.this_module is too small for struct module")
        raw = bytes(data[start:start + length])
        end = raw.find(b"\0")
        return _dec(raw[:end if end >= 0 else length])


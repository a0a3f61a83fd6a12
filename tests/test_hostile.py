"""Hostile input: every kind of bad module gives a FormatError subclass with a clear message,
never another exception, within bounded time and memory."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import random
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from conftest import Tree
from lkm import compress
from lkm import elf as E
from lkm.elf import ElfFile
from lkm.errors import CompressionError, ElfError, FormatError, NotElfError
from lkm.module import ModuleFile
from test_elf import Built, Rel, Sec, Sym, build_elf

MiB = 1 << 20


def exercise(data: bytes, path: str = "/x/m.ko") -> list[str]:
    """Read everything a ModuleFile offers; return the FormatError messages met.

    Any other exception fails the test (pytest shows the traceback).
    """
    errors: list[str] = []

    def attempt(fn: Callable[[], object]) -> None:
        try:
            fn()
        except FormatError as e:
            assert str(e), "error without a message"
            errors.append(str(e))

    try:
        m = ModuleFile.from_bytes(data, path)
        f = m.elf
    except FormatError as e:
        return [str(e)]

    def sections() -> None:
        for s in f.sections:
            attempt(s.data)
            if s.type in (E.SHT_REL, E.SHT_RELA):
                attempt(lambda s=s: f.relocations(s))  # type: ignore[misc]

    attempt(sections)
    attempt(f.symbols)
    attempt(f.undefined_symbols)
    attempt(lambda: f.symbol_names_with_prefix(b"__crc_"))
    for name in ("modinfo", "params", "versions", "exports", "undefined_symbols",
                 "weak_undefined", "signature", "this_module_name", "this_module_size", "name",
                 "vermagic", "aliases", "depends", "body", "extended_versions", "this_module"):
        attempt(lambda name=name: getattr(m, name))  # type: ignore[misc]
    attempt(m.export_names_for_depmod)
    return errors


def small_module(tree61: Tree) -> bytes:
    return (tree61.moddir / "kernel/lib/crc-itu-t.ko").read_bytes()


# -- not ELF, wrong class ---------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x7f", b"\x7fELF", b"hello world\n" * 10,
                                  b"MZ" + bytes(200), bytes(4096)])
def test_not_elf(data: bytes) -> None:
    with pytest.raises(NotElfError, match="not an ELF file") as ei:
        ElfFile(data)
    assert ei.value.errno == 8  # ENOEXEC, what kmod reports
    assert exercise(data) == ["not an ELF file (bad magic)"]


@pytest.mark.parametrize(("offset", "value", "message"), [
    (4, 0, "unsupported ELF class 0"), (4, 3, "unsupported ELF class 3"),
    (5, 0, "unsupported ELF data encoding 0"), (5, 9, "unsupported ELF data encoding 9"),
])
def test_bad_ident(offset: int, value: int, message: str) -> None:
    data = bytearray(build_elf().data)
    data[offset] = value
    with pytest.raises(ElfError, match=message) as ei:
        ElfFile(bytes(data))
    assert ei.value.errno == 22  # EINVAL


def test_wrong_class_for_layout() -> None:
    """An ELF64 file relabelled ELF32 is read with the 32-bit layout and rejected cleanly."""
    data = bytearray(build_elf(64).data)
    data[4] = 1
    exercise(bytes(data))
    data = bytearray(build_elf(32).data)
    data[4] = 2
    assert exercise(bytes(data))


# -- truncation -------------------------------------------------------------------------------

@pytest.mark.trees
def test_truncated_everywhere(tree61: Tree) -> None:
    """Every prefix of a real signed module (6 KB) is handled cleanly."""
    data = small_module(tree61)
    t0 = time.monotonic()
    clean_at = []
    for n in range(len(data)):
        if not exercise(data[:n]):
            clean_at.append(n)
    assert time.monotonic() - t0 < 60
    # a prefix reads without error only once it holds the whole ELF image (the signature
    # trailer comes after it: without its magic the module is simply unsigned)
    f = ElfFile(data)
    assert min(clean_at) >= f.e_shoff + f.e_shnum * 64


@pytest.mark.parametrize(("bits", "little"), [(64, True), (32, False)])
def test_truncated_crafted(bits: int, little: bool) -> None:
    data = build_elf(bits, little, sections=[Sec(".modinfo", data=b"name=x\0")],
                     symbols=[Sym("a", shndx=0)], relocs={".modinfo": [Rel(0, 1, 1)]}).data
    for n in range(len(data)):
        errs = exercise(data[:n])
        assert errs, n


# -- header fields ----------------------------------------------------------------------------

def built() -> Built:
    return build_elf(sections=[Sec(".text", data=bytes(32)), Sec(".modinfo", data=b"name=x\0"),
                               Sec("__versions", data=bytes(64))],
                     symbols=[Sym("a", shndx=0), Sym("b", shndx=".text")],
                     relocs={".text": [Rel(0, 2, 1, 0)]})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("shoff", 0, "no section header table"),
    ("shoff", 1 << 40, "past the end of the file"),
    ("shoff", (1 << 64) - 1, "past the end of the file"),
    ("shnum", 0xFFFF, "extends past end of file"),
    ("shentsize", 40, "unexpected section header size 40"),
    ("shentsize", 0, "unexpected section header size 0"),
    ("shstrndx", 0, "section name table index 0 out of range"),
    ("shstrndx", 999, "section name table index 999 out of range"),
])
def test_bad_header_fields(field: str, value: int, message: str) -> None:
    with pytest.raises(ElfError, match=message):
        ElfFile(built().patch_ehdr(field, value))


def test_extended_numbering_huge() -> None:
    b = built()
    data = bytearray(b.patch_ehdr("shnum", 0))
    struct.pack_into("<Q", data, b.shoff + 32, 1 << 40)
    with pytest.raises(ElfError, match="too many sections"):
        ElfFile(bytes(data))
    struct.pack_into("<Q", data, b.shoff + 32, 100_000)
    with pytest.raises(ElfError, match="extends past end of file"):
        ElfFile(bytes(data))


def test_shstrtab_not_terminated() -> None:
    b = built()
    data = bytearray(b.data)
    idx = b.sec_index[".shstrtab"]
    off = b.sec_offsets[".shstrtab"]
    size = struct.unpack_from("<Q", data, b.shdr_offset(idx) + 32)[0]
    data[off + size - 1] = ord("x")
    with pytest.raises(ElfError, match="not NUL-terminated"):
        ElfFile(bytes(data))


# -- section header fields --------------------------------------------------------------------

@pytest.mark.parametrize("section", [".text", ".modinfo", "__versions", ".symtab", ".strtab",
                                     ".rela.text"])
@pytest.mark.parametrize(("field", "value"), [
    ("offset", 1 << 40), ("offset", (1 << 64) - 1), ("size", 1 << 40), ("size", (1 << 64) - 1),
    ("name", 1 << 20), ("link", 9999), ("info", 9999), ("entsize", 7), ("type", 0xDEAD),
])
def test_bad_section_fields(section: str, field: str, value: int) -> None:
    b = built()
    errors = exercise(b.patch_shdr(b.sec_index[section], field, value))
    if field in ("offset", "size") and section != ".shstrtab":
        idx = b.sec_index[section]
        assert any(f"section {idx} ({section}) extends past end of file" in e or
                   f"section {idx} (unnamed)" in e for e in errors), errors
    if field == "name":
        assert any("name offset" in e for e in errors), errors


def test_symtab_size_not_multiple() -> None:
    b = built()
    idx = b.sec_index[".symtab"]
    errors = exercise(b.patch_shdr(idx, "size", 24 * 3 - 5))
    assert any("not a multiple of the symbol size" in e for e in errors)


def test_symbol_fields() -> None:
    """st_name outside .strtab, st_shndx outside the table, relocation symbol out of range."""
    b = build_elf(sections=[Sec("__ksymtab", data=bytes(12)),
                            Sec("__ksymtab_strings", data=b"a\0")],
                  symbols=[Sym("__crc_a", shndx=0xFFF0), Sym("__kstrtab_a",
                                                             shndx="__ksymtab_strings")],
                  relocs={"__ksymtab": [Rel(4, 2, 2)]})
    data = bytearray(b.data)
    sym = b.sec_offsets[".symtab"]
    struct.pack_into("<I", data, sym + 24, 1 << 30)  # symbol 1's st_name
    errors = exercise(bytes(data))
    assert any("name offset 0x40000000 is outside the string table" in e for e in errors)
    data = bytearray(b.data)
    rel = b.sec_offsets[".rela__ksymtab"]
    struct.pack_into("<Q", data, rel + 8, (500 << 32) | 2)  # r_sym 500
    errors = exercise(bytes(data))
    assert any("beyond the 3 symbols" in e for e in errors)
    data = bytearray(b.data)
    struct.pack_into("<Q", data, sym + 48 + 8, 1 << 40)  # __kstrtab_a's value
    errors = exercise(bytes(data))
    assert any("string offset" in e for e in errors)


def test_huge_counts_are_bounded() -> None:
    """A symtab and a relocation table that claim the whole file are bounded by its size."""
    b = built()
    big = b.data + bytes(4 * MiB)
    t0 = time.monotonic()
    for section in (".symtab", ".rela.text"):
        idx = b.sec_index[section]
        data = Built(big, 64, True, b.shoff).patch_shdr(idx, "offset", 0)
        data = Built(data, 64, True, b.shoff).patch_shdr(idx, "size", len(big) // 24 * 24)
        exercise(data)
    assert time.monotonic() - t0 < 20


@pytest.mark.trees
def test_fuzz_real_module(tree61: Tree) -> None:
    """Random byte changes in the headers, tables and strings of a real module."""
    data = small_module(tree61)
    f = ElfFile(data)
    regions = [(0, 64), (f.e_shoff, f.e_shnum * 64)]
    for name in (".symtab", ".strtab", ".modinfo", "__versions", ".rela__ksymtab",
                 "__ksymtab", "__ksymtab_strings", ".shstrtab"):
        s = f.section(name)
        if s is not None:
            regions.append((s.offset, s.size))
    rng = random.Random(1234)
    t0 = time.monotonic()
    for _ in range(1500):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            start, size = rng.choice(regions)
            pos = start + rng.randrange(max(size, 1))
            if pos < len(buf):
                buf[pos] = rng.choice((0, 0xFF, 0x80, 0x7F, rng.randrange(256)))
        exercise(bytes(buf))
    assert time.monotonic() - t0 < 60


# -- compression ------------------------------------------------------------------------------

def peak_memory(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    with contextlib.suppress(CompressionError):
        fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _gzip_bomb(total: int) -> bytes:
    member = gzip.compress(bytes(64 * MiB), compresslevel=9, mtime=0)
    return member * (total // (64 * MiB) + 1)


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_bomb_with_small_limit(kind: str) -> None:
    """The cap holds during decoding: memory stays near the limit, time short."""
    zeros = bytes(64 * MiB)
    if kind == "gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        z = c.compress(zeros) + c.flush()
    elif kind == "xz":
        z = lzma.compress(zeros, preset=0)
        # make the index claim a small size: the stream decoder must stop the bomb itself
        assert z.count(b"\x80\x80\x80\x20") == 1
        z = z.replace(b"\x80\x80\x80\x20", b"\x80\x80\x80\x00")
        assert compress._xz_declared_size(memoryview(z)) == 0
    else:
        z = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(zeros)
    limit = 4 * MiB
    t0 = time.monotonic()
    peak = peak_memory(lambda: compress.decompress(z, kind, limit=limit))
    assert time.monotonic() - t0 < 10
    assert peak < limit + 8 * MiB, peak
    with pytest.raises(CompressionError, match="exceeds the limit of 4194304 bytes"):
        compress.decompress(z, kind, limit=limit)


def test_gzip_bomb_default_limit() -> None:
    bomb = _gzip_bomb(compress.MAX_MODULE_SIZE)
    assert len(bomb) < 2 * MiB
    t0 = time.monotonic()
    with pytest.raises(CompressionError, match="exceeds the limit"):
        compress.decompress(bomb)
    assert time.monotonic() - t0 < 30


def test_declared_sizes_refused_up_front() -> None:
    """xz indexes and zstd frame headers that declare more than the limit: refused at once."""
    big = 1 << 40
    fhd = bytes([0xE0])  # FCS 8 bytes, single segment
    frame = b"\x28\xb5\x2f\xfd" + fhd + big.to_bytes(8, "little") + b"\x01\x00\x00"
    t0 = time.monotonic()
    with pytest.raises(CompressionError, match="exceeds the limit"):
        compress.decompress(frame)
    xz = lzma.compress(bytes(8 * MiB), preset=0)
    with pytest.raises(CompressionError, match="exceeds the limit"):
        compress.decompress(xz, limit=MiB)
    assert time.monotonic() - t0 < 1


def test_decoder_memory_bombs() -> None:
    """A zstd window or an xz dictionary larger than the decoder caps is refused."""
    fhd = bytes([0x00])  # no FCS, window descriptor follows
    window = bytes([(31 - 10) << 3])  # 2 GiB window
    frame = b"\x28\xb5\x2f\xfd" + fhd + window + b"\x01\x00\x00"
    with pytest.raises(CompressionError, match="zstd"):
        compress.decompress(frame)
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1536 * MiB, "preset": 0}]
    xz = lzma.compress(b"abc", format=lzma.FORMAT_XZ, filters=filters)
    with pytest.raises(CompressionError, match="xz: memory"):
        compress.decompress(xz)


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_corrupt_and_truncated_streams(kind: str) -> None:
    data = bytes(range(256)) * 400 + bytes(100_000)
    z = compress.compress(data, kind)
    rng = random.Random(99)
    for n in list(range(0, 64)) + list(range(64, len(z), 97)):
        if kind == "zstd" and n:  # kmod 30 keeps the blocks decoded before the cut
            try:
                out = compress.decompress(z[:n], kind)
            except CompressionError:
                continue
            assert len(out) < len(data) and data.startswith(out), n
            continue
        with pytest.raises(CompressionError, match=kind):
            compress.decompress(z[:n], kind)
    caught = 0
    for _ in range(200):
        buf = bytearray(z)
        pos = rng.randrange(len(buf))
        buf[pos] ^= 1 << rng.randrange(8)
        try:
            out = compress.decompress(bytes(buf), kind)
        except CompressionError:
            caught += 1
        else:
            assert out != data or buf == z
    assert caught > 150


def test_compressed_file_on_disk(tmp_path: Path) -> None:
    p = tmp_path / "m.ko.xz"
    p.write_bytes(compress.compress(built().data, "xz")[:-20])
    with pytest.raises(CompressionError, match="xz"):
        ModuleFile.open(p)
    p.write_bytes(compress.compress(b"not an elf", "zstd"))
    with pytest.raises(NotElfError):
        _ = ModuleFile.open(p).elf


def test_special_files(tmp_path: Path) -> None:
    """A FIFO does not block, a character device is read up to the limit, then refused."""
    import os

    fifo = tmp_path / "fifo.ko"
    os.mkfifo(fifo)
    assert compress.read_module(fifo) == (b"", None)
    with pytest.raises(NotElfError):
        _ = ModuleFile.open(fifo).elf
    with pytest.raises(FormatError, match="exceeds the limit"):
        compress.read_module("/dev/zero", limit=MiB)
    with pytest.raises(IsADirectoryError):
        compress.read_module(tmp_path)

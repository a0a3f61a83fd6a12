"""lkm.compress: magic detection, round trips, kmod's stream rules, Kbuild's xz settings."""

from __future__ import annotations

import gzip
import lzma
import mmap
import os
from pathlib import Path

import pytest
import zstandard

from conftest import Tree
from lkm import compress
from lkm.errors import CompressionError

DATA = os.urandom(50_000) + bytes(200_000) + b"tail"


@pytest.mark.parametrize(("kind", "magic"), [("gzip", b"\x1f\x8b"),
                                             ("xz", b"\xfd7zXZ\x00"),
                                             ("zstd", b"\x28\xb5\x2f\xfd")])
def test_detect(kind: str, magic: bytes) -> None:
    assert compress.detect(magic + b"rest") == kind
    assert compress.detect(memoryview(compress.compress(b"x", kind))) == kind


def test_detect_none() -> None:
    assert compress.detect(b"") is None
    assert compress.detect(b"\x7fELF\x02\x01") is None
    assert compress.detect(b"\xfd7zXZ") is None  # xz needs all six magic bytes
    assert compress.detect(b"\x1f") is None


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_round_trip(kind: str) -> None:
    z = compress.compress(DATA, kind)
    assert compress.detect(z) == kind
    assert compress.decompress(z) == DATA
    assert compress.decompress(z, kind) == DATA
    assert compress.decompress(memoryview(z)) == DATA
    assert compress.decompress(bytearray(z)) == DATA


def test_compress_settings() -> None:
    """Kbuild: gzip -n (no name, no time), xz --check=crc32 --lzma2=dict=1MiB, zstd with
    content size and checksum."""
    g = compress.compress(DATA, "gzip")
    assert g[4:8] == b"\0\0\0\0" and not g[3] & 0x08  # mtime 0, no FNAME
    x = compress.compress(DATA, "xz")
    assert x[6:8] == b"\x00\x01"  # stream flags: CRC32
    params = zstandard.get_frame_parameters(compress.compress(DATA, "zstd"))
    assert params.content_size == len(DATA) and params.has_checksum


def test_unknown_kind() -> None:
    with pytest.raises(CompressionError, match="unsupported compression"):
        compress.decompress(b"abc", "bzip2")
    with pytest.raises(CompressionError, match="unsupported compression"):
        compress.compress(b"abc", "bzip2")
    with pytest.raises(CompressionError, match="unknown magic"):
        compress.decompress(b"plain")


def test_gzip_members_and_trailing_garbage() -> None:
    """Like zlib's gzread: every member is read; trailing non-gzip bytes are ignored."""
    two = gzip.compress(b"abc") + gzip.compress(b"def")
    assert compress.decompress(two) == b"abcdef"
    assert compress.decompress(two + b"garbage") == b"abcdef"


def test_xz_concatenated_streams() -> None:
    """As Debian's kmod 30 reads a .ko.xz (measured with its depmod: liblzma with
    LZMA_CONCATENATED): every stream, stream padding (NULs, a multiple of four) between
    and after them; other trailing bytes, or padding of another length, are an error."""
    a = lzma.compress(b"abc", check=lzma.CHECK_CRC32)
    assert compress.decompress(a + lzma.compress(b"def")) == b"abcdef"
    assert compress.decompress(a + bytes(8)) == b"abc"  # stream padding
    assert compress.decompress(a + bytes(4) + lzma.compress(b"d") + bytes(4)) == b"abcd"
    for bad in (a + b"J", a + bytes(3), a + bytes(4) + b"\x01", a + lzma.compress(b"d")[:-3]):
        with pytest.raises(CompressionError, match="xz"):
            compress.decompress(bad)


def test_zstd_frames() -> None:
    """kmod's ZSTD_decompressStream loop reads every frame of the file."""
    c = zstandard.ZstdCompressor()
    assert compress.decompress(c.compress(b"abc") + c.compress(b"def")) == b"abcdef"
    skippable = b"\x50\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"xyz"
    assert compress.decompress(c.compress(b"abc") + skippable) == b"abc"
    with pytest.raises(CompressionError, match="zstd"):
        compress.decompress(c.compress(b"abc") + b"junk")


def test_zstd_without_content_size() -> None:
    z = zstandard.ZstdCompressor(write_content_size=False).compress(DATA)
    assert compress.decompress(z) == DATA


def test_limit() -> None:
    for kind in ("gzip", "xz", "zstd"):
        z = compress.compress(DATA, kind)
        assert compress.decompress(z, limit=len(DATA)) == DATA
        with pytest.raises(CompressionError, match="exceeds the limit"):
            compress.decompress(z, limit=len(DATA) - 1)


def test_read_module_uncompressed_is_mapped(tmp_path: Path) -> None:
    p = tmp_path / "a.ko"
    p.write_bytes(b"\x7fELF" + bytes(100))
    content, kind = compress.read_module(p)
    assert kind is None and isinstance(content, mmap.mmap)
    assert content[:4] == b"\x7fELF"
    content.close()


def test_read_module_empty_and_special(tmp_path: Path) -> None:
    p = tmp_path / "empty.ko"
    p.write_bytes(b"")
    assert compress.read_module(p) == (b"", None)
    content, kind = compress.read_module("/dev/null")
    assert (bytes(content), kind) == (b"", None)


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_read_module_compressed(tmp_path: Path, kind: str) -> None:
    p = tmp_path / f"a.ko{compress.EXTENSIONS[kind]}"
    p.write_bytes(compress.compress(DATA, kind))
    assert compress.read_module(p) == (DATA, kind)


def test_read_module_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compress.read_module(tmp_path / "nope.ko")


@pytest.mark.trees
def test_xz_recompression_is_byte_identical(tree612: Tree) -> None:
    """compress(..., "xz") reproduces Debian's .ko.xz files exactly."""
    paths = [p for p in tree612.modules() if p.name.endswith(".ko.xz")][::400]
    assert paths
    for p in paths:
        raw = p.read_bytes()
        content, kind = compress.read_module(p)
        assert kind == "xz"
        assert compress.compress(content, "xz") == raw, p


@pytest.mark.trees
def test_xz_index_size_matches(tree612: Tree) -> None:
    for p in [p for p in tree612.modules() if p.name.endswith(".ko.xz")][::200]:
        raw = p.read_bytes()
        assert compress._xz_declared_size(memoryview(raw)) == len(lzma.decompress(raw))

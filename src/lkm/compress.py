"""Compressed modules: detection by magic (as kmod does), bounded decompression, compression.

Decompression is streamed with an output cap, so a decompression bomb costs at most
``limit`` bytes of memory and the time to produce them before CompressionError.
"""

from __future__ import annotations

import gzip
import lzma
import mmap
import os
import re
import stat
import zlib
from collections.abc import Callable
from typing import Any

from lkm.errors import CompressionError, FormatError

Buffer = bytes | bytearray | memoryview | mmap.mmap

MAX_MODULE_SIZE = 512 << 20
"""Default cap on a decompressed module (Debian's largest, amdgpu.ko, is about 20 MiB)."""

XZ_MEMLIMIT = 256 << 20
"""Cap on the xz decoder's own memory (dictionary); ``xz -9`` needs 65 MiB."""

ZSTD_MAX_WINDOW = 1 << 27
"""Largest zstd window accepted (128 MiB, zstd's default decoder limit)."""

_CHUNK = 1 << 20

MAGICS: tuple[tuple[str, bytes], ...] = (
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("xz", b"\xfd\x37\x7a\x58\x5a\x00"),
    ("gzip", b"\x1f\x8b"),
)

EXTENSIONS = {"gzip": ".gz", "xz": ".xz", "zstd": ".zst"}
"""The file name extension kmod and Kbuild use for each compression."""


def detect(data: Buffer) -> str | None:
    """The compression of ``data`` by its magic: "gzip", "xz", "zstd" or None."""
    head = bytes(data[:6])
    for kind, magic in MAGICS:
        if head.startswith(magic):
            return kind
    return None


def decompress(data: Buffer, kind: str | None = None, limit: int = MAX_MODULE_SIZE) -> bytes:
    """Decompress ``data`` (``kind`` detected from the magic when None).

    Raises CompressionError for unknown formats, corrupt or truncated streams and
    output larger than ``limit`` bytes.
    """
    if kind is None:
        kind = detect(data)
        if kind is None:
            raise CompressionError("not a gzip, xz or zstd stream (unknown magic)")
    view = memoryview(data)
    try:
        if kind == "gzip":
            return _gunzip(view, limit)
        if kind == "xz":
            return _unxz(view, limit)
        if kind == "zstd":
            return _unzstd(view, limit)
    except CompressionError:
        raise
    except MemoryError as e:
        raise CompressionError(f"{kind}: out of memory") from e
    except (zlib.error, lzma.LZMAError, EOFError, ValueError, OSError) as e:
        raise CompressionError(f"{kind}: {_reason(e)}") from e
    except Exception as e:
        # zstandard raises its own ZstdError, which is not importable for typing
        if type(e).__name__ == "ZstdError":
            raise CompressionError(f"zstd: {_reason(e)}") from e
        raise
    raise CompressionError(f"unsupported compression {kind!r}")


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text[:1].lower() + text[1:]


def _too_big(kind: str, limit: int) -> CompressionError:
    return CompressionError(f"{kind}: decompressed size exceeds the limit of {limit} bytes")


def _drain(kind: str, step: Callable[[bytes | memoryview, int], bytes], first: memoryview,
           more: Callable[[], bool], out: bytearray, limit: int) -> None:
    """Feed ``first`` to ``step`` and keep pulling output while ``more()`` says so."""
    chunk = step(first, min(_CHUNK, limit - len(out) + 1))
    while True:
        out += chunk
        if len(out) > limit:
            raise _too_big(kind, limit)
        if not more():
            return
        chunk = step(b"", min(_CHUNK, limit - len(out) + 1))
        if not chunk and not more():
            return


def _gunzip(view: memoryview, limit: int) -> bytes:
    """gzip, every member (like zlib's gzread); trailing bytes that are not a member are ignored."""
    out = bytearray()
    pos = 0
    first = True
    while first or (len(view) - pos >= 2 and bytes(view[pos:pos + 2]) == b"\x1f\x8b"):
        first = False
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)

        def step(buf: bytes | memoryview, n: int, d: Any = d) -> bytes:
            if buf:
                return bytes(d.decompress(buf, n))
            return bytes(d.decompress(d.unconsumed_tail, n))

        def more(d: Any = d) -> bool:
            return not d.eof and bool(d.unconsumed_tail)

        _drain("gzip", step, view[pos:], more, out, limit)
        if not d.eof:
            # the whole input was consumed without reaching the end of the member
            if d.unconsumed_tail:
                raise CompressionError("gzip: internal error")
            raise CompressionError("gzip: unexpected end of input (truncated stream)")
        pos = len(view) - len(d.unused_data)
    return bytes(out)


_NONZERO = re.compile(b"[^\0]")


def _unxz(view: memoryview, limit: int) -> bytes:
    """xz, every stream, as kmod 30 reads a .ko.xz (liblzma's decoder with
    LZMA_CONCATENATED, as measured against Debian's depmod): streams one after the
    other, each optionally followed by stream padding (NUL bytes, a multiple of four);
    anything else after a stream, or a truncated one, is an error."""
    declared = _xz_declared_size(view)
    if declared is not None and declared > limit:
        raise _too_big("xz", limit)
    if declared is not None:
        # one call into a buffer of the declared size: no chunks to gather and copy, so
        # half the peak memory (depmod); a stream that does not end there is streamed
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
        whole = d.decompress(view, declared + 1)
        if d.eof and len(whole) == declared:
            return whole  # exactly one stream and its padding (_xz_declared_size)
        del whole
    out = bytearray()
    pos = 0
    while True:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)

        def step(buf: bytes | memoryview, n: int, d: Any = d) -> bytes:
            return bytes(d.decompress(buf, n))

        def more(d: Any = d) -> bool:
            return not d.eof and not d.needs_input

        _drain("xz", step, view[pos:], more, out, limit)
        if not d.eof:
            raise CompressionError("xz: unexpected end of input (truncated stream)")
        pos = len(view) - len(d.unused_data)
        start = pos
        nonzero = _NONZERO.search(view, pos)
        pos = len(view) if nonzero is None else nonzero.start()
        if (pos - start) % 4:
            raise CompressionError("xz: stream padding is not a multiple of four bytes")
        if pos == len(view):
            return bytes(out)


def _xz_varint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A multibyte integer of the xz format: (value, next position)."""
    value = 0
    for shift in range(0, 63, 7):
        if pos >= end:
            raise ValueError("truncated")
        b = view[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
    raise ValueError("too long")


def _xz_declared_size(view: memoryview) -> int | None:
    """The uncompressed size an xz file made of one stream declares in its index.

    None when the file is not exactly one well-formed-looking stream (then the
    decoder alone decides).  Used to refuse bombs before decoding anything.
    """
    n = len(view)
    while n >= 4 and bytes(view[n - 4:n]) == b"\0\0\0\0":  # stream padding
        n -= 4
    if n < 24 or bytes(view[n - 2:n]) != b"YZ":
        return None
    index_size = (int.from_bytes(view[n - 8:n - 4], "little") + 1) * 4
    index_start = n - 12 - index_size
    if index_start < 12 or view[index_start] != 0:
        return None
    try:
        count, pos = _xz_varint(view, index_start + 1, n - 12)
        if count > index_size // 2:
            return None
        blocks = total = 0
        for _ in range(count):
            unpadded, pos = _xz_varint(view, pos, n - 12)
            size, pos = _xz_varint(view, pos, n - 12)
            blocks += (unpadded + 3) & ~3
            total += size
    except ValueError:
        return None
    if 12 + blocks + index_size + 12 != n:
        return None
    return total


def _unzstd(view: memoryview, limit: int) -> bytes:
    """zstd, every frame (as kmod's ZSTD_decompressStream loop over the whole file)."""
    import io

    import zstandard

    if not view:
        raise CompressionError("zstd: unexpected end of input (empty stream)")
    try:
        declared = _zstd_walk(view)
    except _ZstdTruncated:
        # kmod 30's load_zstd runs ZSTD_decompressStream over the whole input and keeps
        # what came out: the blocks before the cut (often nothing), which the ELF reader
        # then refuses (measured: depmod's "Exec format error" for a truncated .ko.zst)
        declared = None
    if declared is not None and declared > limit:
        raise _too_big("zstd", limit)
    dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    out = bytearray()
    with dctx.stream_reader(io.BytesIO(view), read_across_frames=True,
                            closefd=False) as reader:
        while True:
            chunk = reader.read(min(_CHUNK, limit - len(out) + 1))
            if not chunk:
                break
            out += chunk
            if len(out) > limit:
                raise _too_big("zstd", limit)
    return bytes(out)


class _ZstdTruncated(Exception):  # what the walk found: not an error to show
    """The input ends inside a zstd frame."""


def _zstd_walk(view: memoryview) -> int | None:
    """Walk the frames and blocks of a zstd stream without decoding them.

    Returns the sum of the declared content sizes (None if a frame does not
    declare one).  Raises _ZstdTruncated when the input ends inside a frame, and
    CompressionError for a reserved block type.
    """
    n = len(view)
    pos = 0
    total: int | None = 0
    while pos < n:
        if n - pos < 4:
            raise _ZstdTruncated("truncated frame header")
        magic = int.from_bytes(view[pos:pos + 4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            if n - pos < 8:
                raise _ZstdTruncated("truncated frame")
            pos += 8 + int.from_bytes(view[pos + 4:pos + 8], "little")
            if pos > n:
                raise _ZstdTruncated("truncated frame")
            continue
        if magic != 0xFD2FB528:
            # not a frame: let the decoder report it with its own words
            return total
        if n - pos < 5:
            raise _ZstdTruncated("truncated frame header")
        fhd = view[pos + 4]
        fcs_flag = fhd >> 6
        single = (fhd >> 5) & 1
        checksum = (fhd >> 2) & 1
        did_size = (0, 1, 2, 4)[fhd & 3]
        fcs_size = (single, 2, 4, 8)[fcs_flag]
        hdr = 5 + (0 if single else 1) + did_size
        if n - pos < hdr + fcs_size:
            raise _ZstdTruncated("truncated frame header")
        if fcs_size:
            size = int.from_bytes(view[pos + hdr:pos + hdr + fcs_size], "little")
            if fcs_size == 2:
                size += 256
            if total is not None:
                total += size
        else:
            total = None
        pos += hdr + fcs_size
        while True:
            if n - pos < 3:
                raise _ZstdTruncated("truncated block")
            bh = int.from_bytes(view[pos:pos + 3], "little")
            last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
            if btype == 3:
                raise CompressionError("zstd: corrupt block (reserved block type)")
            pos += 3 + (1 if btype == 1 else bsize)
            if pos > n:
                raise _ZstdTruncated("truncated block")
            if last:
                break
        pos += 4 * checksum
        if pos > n:
            raise _ZstdTruncated("truncated checksum")
    return total


def compress(data: Buffer, kind: str) -> bytes:
    """Compress as Kbuild's modules_install does: ``gzip -n``, ``xz --check=crc32``, ``zstd``."""
    raw = bytes(data)
    if kind == "gzip":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if kind == "xz":
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]
        return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             filters=filters)
    if kind == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(raw))
    raise CompressionError(f"unsupported compression {kind!r}")


def read_module(path: str | os.PathLike[str], limit: int = MAX_MODULE_SIZE
                ) -> tuple[bytes | mmap.mmap, str | None]:
    """The module's (decompressed) content and its compression name (None if uncompressed).

    Uncompressed regular files are mapped read-only; empty, unmappable or special
    files are read (never blocking, at most ``limit`` bytes).  OSError passes through
    (missing file, permission); bad streams raise CompressionError, oversized files
    FormatError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            kind = detect(os.pread(fd, 6, 0))
            if kind is None and st.st_size > limit:
                raise FormatError(f"file exceeds the limit of {limit} bytes")
            if kind is None and st.st_size > 0:
                try:
                    return mmap.mmap(fd, 0, prot=mmap.PROT_READ), None
                except (OSError, ValueError, OverflowError):
                    pass
        raw = _read_capped(fd, limit)
    finally:
        os.close(fd)
    kind = detect(raw)
    if kind is None:
        return raw, None
    return decompress(raw, kind, limit), kind


def _read_capped(fd: int, limit: int) -> bytes:
    """Read to end of file (or until a special file has nothing ready), at most ``limit``."""
    chunks = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise FormatError(f"file exceeds the limit of {limit} bytes")
    return b"".join(chunks)

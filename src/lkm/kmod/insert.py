"""Loading a module file into the kernel as kmod_module_insert_module does (libkmod-module.c,
kmod 31+'s in-kernel decompression path), and libkmod-elf.c's force strips."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Literal

from lkm.errors import KernelError, LkmError
from lkm.kernel.uapi import (
    MODULE_INIT_COMPRESSED_FILE,
    MODULE_INIT_IGNORE_MODVERSIONS,
    MODULE_INIT_IGNORE_VERMAGIC,
)

if TYPE_CHECKING:
    from lkm.kernel.backend import KernelBackend


def insert_file(kernel: KernelBackend, path: str, options: str, *,
                force_vermagic: bool = False, force_modversion: bool = False
                ) -> tuple[int, bool]:
    """Load the module file ``path`` into ``kernel``.

    An uncompressed file, or one compressed the way the kernel decompresses
    (/sys/module/compression), goes to finit_module (with
    MODULE_INIT_COMPRESSED_FILE when compressed); otherwise, or when finit_module
    is not there (ENOSYS), the content is decompressed here and given to
    init_module, with ``__versions`` and the vermagic stripped when forced.

    :param kernel: the running or a virtual kernel.
    :param path: the module file.
    :param options: the module parameters.
    :param force_vermagic: MODULE_INIT_IGNORE_VERMAGIC / strip the vermagic.
    :param force_modversion: MODULE_INIT_IGNORE_MODVERSIONS / strip ``__versions``.
    :returns: (0 or a negative errno, whether the kernel was asked).  A file that
        cannot be read or decompressed gives its errno (EINVAL for a bad stream or a
        file under 6 bytes) and False.
    """
    from lkm import compress

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        return -(e.errno or errno.EIO), False
    if len(head) < 6:
        return -errno.EINVAL, False
    kind = compress.detect(head)
    kflags = ((MODULE_INIT_IGNORE_VERMAGIC if force_vermagic else 0)
              | (MODULE_INIT_IGNORE_MODVERSIONS if force_modversion else 0))
    if kind is None or kind == kernel.compression():
        if kind is not None:
            kflags |= MODULE_INIT_COMPRESSED_FILE
        try:
            kernel.finit_module(path, options, kflags)
            return 0, True
        except KernelError as e:
            if e.errno != errno.ENOSYS:
                return -e.errno, True
        except OSError as e:
            return -(e.errno or errno.EIO), False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return -errno.EINVAL, False  # libkmod maps the file: only regular files
        image, _kind = compress.read_module(path)
        data = bytes(image)
    except OSError as e:
        return -(e.errno or errno.EIO), False
    except LkmError:
        return -errno.EINVAL, False
    if force_vermagic or force_modversion:
        data = strip_versions(data, force_vermagic, force_modversion)
    try:
        kernel.init_module(data, options)
    except KernelError as e:
        return -e.errno, True
    return 0, True


def strip_versions(data: bytes, vermagic: bool, modversion: bool) -> bytes:
    """A copy of a module image with ``__versions`` no longer SHF_ALLOC
    (kmod_elf_strip_section) and the ``vermagic=`` string of ``.modinfo`` zeroed
    (kmod_elf_strip_vermagic); ``data`` itself if it is not a usable ELF file."""
    from lkm.elf import SHF_ALLOC, ElfFile

    try:
        elf = ElfFile(data)
    except LkmError:
        return data
    out = bytearray(data)
    is64 = elf.elfclass == 64
    order: Literal["little", "big"] = "little" if elf.little_endian else "big"
    try:
        if modversion:
            idx = elf.section_index("__versions")
            if idx is not None:
                hdr_size = 64 if is64 else 40
                off = elf.e_shoff + idx * hdr_size + 8  # sh_flags
                size = 8 if is64 else 4
                val = int.from_bytes(out[off:off + size], order) & ~SHF_ALLOC
                out[off:off + size] = val.to_bytes(size, order)
        if vermagic:
            idx = elf.section_index(".modinfo")
            if idx is not None:
                start, size = elf.section_header(idx)[4], elf.section_header(idx)[5]
                sec = bytes(out[start:start + size])
                pos = 0
                while pos < len(sec) and sec[pos] == 0:
                    pos += 1
                while pos < len(sec):
                    end = sec.find(b"\0", pos)
                    end = len(sec) if end < 0 else end
                    if sec.startswith(b"vermagic=", pos):
                        out[start + pos:start + end] = bytes(end - pos)
                        break
                    pos = end + 1
    except LkmError:
        return data
    return bytes(out)


__all__ = ["insert_file", "strip_versions"]

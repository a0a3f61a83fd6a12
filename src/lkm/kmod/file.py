"""A module file as libkmod opens and reads it (libkmod-file.c, libkmod-elf.c).

:func:`open_file` is kmod_file_open as Debian's kmod 30 builds it (xz and zstd,
detected by magic; no zlib, so a gzip stream stays undecoded and is then not ELF);
:func:`module_file` adds libkmod's ELF identification (kmod_elf_new) and
:func:`read_info` is kmod_module_get_info of a file: the ``.modinfo`` strings, then
the signature entries.  Failures raise :class:`KmodError` carrying the errno libkmod
returns (:class:`lkm.kmod.errors.KmodError`), which kmod's tools print with strerror.
"""

from __future__ import annotations

import errno
import mmap
import os

from lkm import compress, signature
from lkm.errors import FormatError, LkmError
from lkm.kmod.errors import KmodError
from lkm.module import ModuleFile, kmod_strings

# what kmod_file_open decompresses (Debian's kmod 30: +ZSTD +XZ -ZLIB)
DECOMPRESSED = ("xz", "zstd")


def open_file(path: str) -> bytes | mmap.mmap:
    """kmod_file_open: the module's content.

    :param path: the module file.
    :returns: the decompressed content of an xz or zstd file (by magic), else the
        file mapped read-only.
    :raises KmodError: EINVAL for a file under 6 bytes or a bad stream, the errno of
        a failed open/read/mmap otherwise.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise KmodError(e.errno or errno.EIO) from None
    try:
        head = os.pread(fd, 6, 0)
        if len(head) < 6:
            raise KmodError(errno.EINVAL)
        kind = compress.detect(head)
        if kind in DECOMPRESSED:
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
            data: bytes = compress.decompress(b"".join(chunks), kind)
            return data
        return mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    except OSError as e:
        raise KmodError(e.errno or errno.EIO) from None
    except FormatError as e:
        raise KmodError(e.errno) from None
    finally:
        os.close(fd)


def elf_identify(content: bytes | mmap.mmap) -> None:
    """libkmod's elf_identify: raises KmodError(ENOEXEC) for content that is not ELF,
    KmodError(EINVAL) for an ELF header libkmod cannot use (class, byte order, size)."""
    n = len(content)
    if n <= 16 or content[:4] != b"\x7fELF":
        raise KmodError(errno.ENOEXEC)
    ei_class, ei_data = content[4], content[5]
    if ei_class not in (1, 2) or n <= (52 if ei_class == 1 else 64) or ei_data not in (1, 2):
        raise KmodError(errno.EINVAL)


def module_file(path: str) -> ModuleFile:
    """kmod_module_get_elf: the file opened as libkmod opens it, its ELF header checked.

    :raises KmodError: as :func:`open_file` and :func:`elf_identify`.
    """
    content = open_file(path)
    elf_identify(content)
    return ModuleFile(content, path)


def read_info(path: str) -> list[tuple[bytes, bytes]]:
    """kmod_module_get_info of a module file.

    :param path: the module file.
    :returns: the ``.modinfo`` strings split at their first ``=`` (file order, libkmod's
        string rule: :func:`lkm.module.kmod_strings`), then the signature entries kmod
        30's modinfo shows (``sig_id``, ``signer``, ``sig_key``, ``sig_hashalgo``,
        ``signature``).
    :raises KmodError: ENOENT without a ``.modinfo`` section, else as
        :func:`module_file`; EINVAL for ELF structures libkmod refuses.
    """
    mf = module_file(path)
    # the mapping is released with the last view of it, when this returns
    try:
        elf = mf.elf
        try:
            data = elf.section_bytes(".modinfo")
        except FormatError:
            data = None  # libkmod skips a section header it cannot use
        if data is None:
            raise KmodError(errno.ENOENT)
        out = [(key, value) for key, _, value in
               (s.partition(b"=") for s in kmod_strings(bytes(data)))]
        sig = signature.modinfo_fields(memoryview(mf.content))
    except KmodError:
        raise
    except LkmError as e:
        raise KmodError(getattr(e, "errno", errno.EINVAL)) from None
    except ValueError:
        raise KmodError(errno.EINVAL) from None
    for key_s, value_s in sig:
        out.append((key_s.encode("utf-8", "surrogateescape"),
                    value_s.encode("utf-8", "surrogateescape")))
    return out


__all__ = ["DECOMPRESSED", "elf_identify", "module_file", "open_file", "read_info"]

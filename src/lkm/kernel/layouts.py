"""The struct layouts of a kernel profile: the BTF of the kernel's own vmlinux.

Module code is laid out against the kernel it was built for: ``struct module``, ``task_struct``,
``file``, ``seq_file``... differ between versions and configurations, so their layouts are read
from the ``.BTF`` section of the vmlinux inside the profile's vmlinuz (Debian builds with
CONFIG_DEBUG_INFO_BTF; scripts/link-vmlinux.sh puts it there), never written down per version.

Decompressing a vmlinuz takes a second or so; the first use therefore keeps the raw ``.BTF``
(4-5 MB) next to the profile's cache (``~/.cache/lkm/profiles/<key>.btf``, the key of the
profile's inputs), and later uses read only that file.  Within one process the parsed
:class:`~lkm.btf.Btf` is kept.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lkm.btf import Btf, BtfError
from lkm.errors import FormatError
from lkm.kernel.profile import KernelProfile, ProfileError

_parsed: dict[Path, Btf] = {}


class NoBtfError(ProfileError):
    """The profile has no BTF to take struct layouts from, so module code cannot run."""


def _cannot_run(profile: KernelProfile, why: str) -> NoBtfError:
    return NoBtfError(f"kernel {profile.release}: {why}: struct layouts are unknown, so module "
                      f"code cannot run (build the profile from the kernel's linux-image tree "
                      f"or its vmlinuz)")


def image_of(profile: KernelProfile) -> Path:
    """The kernel image (vmlinuz or vmlinux) the profile was built from."""
    from lkm import kimage

    if profile.kind == "headers":
        raise _cannot_run(profile, f"the profile was built from headers only ({profile.source}), "
                                   f"which carry no BTF")
    if not profile.source:
        raise _cannot_run(profile, "the profile does not say which kernel image it comes from")
    try:
        image = kimage.locate_vmlinuz(profile.source)
    except FormatError as e:
        raise _cannot_run(profile, str(e)) from e
    if not image.is_file():
        raise _cannot_run(profile, f"its kernel image {image} is missing")
    return image


def extract_btf(image: str | os.PathLike[str]) -> bytes:
    """The raw ``.BTF`` section of a kernel image (decompressed as lkm.kimage reads it)."""
    from lkm import kimage
    from lkm.elf import ElfFile

    try:
        vmlinux = kimage.load_vmlinux(image)
        sec = ElfFile(vmlinux).section_bytes(".BTF")
    except OSError as e:
        raise ProfileError(f"{image}: {e.strerror}") from e
    if sec is None:
        raise BtfError(f"{image}: no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF)")
    return bytes(sec)


def layouts(profile: KernelProfile) -> Btf:
    """The BTF types of the profile's kernel (cached); NoBtfError if there are none."""
    cache = profile.cache_path(".btf")
    got = _parsed.get(cache)
    if got is not None:
        return got
    btf = None
    with contextlib.suppress(OSError, BtfError):
        btf = Btf(cache.read_bytes())  # a damaged cache file is rebuilt
    if btf is None:
        image = image_of(profile)
        try:
            data = extract_btf(image)
            btf = Btf(data)
        except (FormatError, ProfileError) as e:
            raise _cannot_run(profile, str(e)) from e
        _save(cache, data)
    _parsed[cache] = btf
    return btf


def _save(path: Path, data: bytes) -> None:
    """Write atomically; a cache that cannot be written is only a slower next use."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    with contextlib.suppress(OSError):
        tmp.unlink()

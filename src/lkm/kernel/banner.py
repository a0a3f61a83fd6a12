"""The kernel's banner (init/version.c ``linux_banner``): what /proc/version prints
(fs/proc/version.c formats linux_proc_banner with the same utsname, so the text is the
same), read from the image's vmlinux and cached beside the profile (``<key>.version``)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

_loaded: dict[Path, str] = {}


def find_banner(vmlinux: bytes, release: str) -> str | None:
    """The ``Linux version RELEASE ...\\n`` string of the image with a build number:
    init/version-timestamp.c's linux_banner (6.1+; init/version.c keeps one without
    the number, "# SMP ...", which the kernel does not print)."""
    key = b"Linux version " + release.encode() + b" "
    found: list[str] = []
    at = vmlinux.find(key)
    while at >= 0:
        end = vmlinux.find(b"\0", at)
        text = vmlinux[at:end].decode("utf-8", "replace")
        found.append(text if text.endswith("\n") else text + "\n")
        at = vmlinux.find(key, at + 1)
    numbered = [t for t in found if re.search(r"\) #\d", t)]
    return (numbered or found)[0] if found else None


def proc_version(profile: Any) -> str:
    """The text of /proc/version (a release-only line when the image has no banner)."""
    cache = Path(profile.cache_path(".version"))
    got = _loaded.get(cache)
    if got is not None:
        return got
    text = None
    with contextlib.suppress(OSError):
        text = cache.read_text() or None
    if text is None:
        from lkm import kimage
        from lkm.errors import LkmError
        from lkm.kernel.layouts import image_of

        try:
            text = find_banner(kimage.load_vmlinux(image_of(profile)), profile.release)
        except (LkmError, OSError):
            text = None
        if text is None:
            text = f"Linux version {profile.release} (lkm virtual kernel)\n"
        else:
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            with contextlib.suppress(OSError):
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(text)
                os.replace(tmp, cache)
    _loaded[cache] = text
    return text


def proc_printk(cmdline: str) -> str:
    """/proc/sys/kernel/printk (kernel/printk/sysctl.c): console_loglevel,
    default_message_loglevel, minimum_console_loglevel, default_console_loglevel;
    ``quiet`` sets the first to 4, ``debug`` to 10, ``loglevel=N`` to N (init/main.c)."""
    console = 7
    for arg in cmdline.split():
        if arg == "quiet":
            console = 4
        elif arg == "debug":
            console = 10
        elif arg.startswith("loglevel="):
            with contextlib.suppress(ValueError):
                console = int(arg[9:], 0)
    return f"{console}\t4\t1\t7\n"

"""``depmod -A``: whether modules.dep is newer than every module file
(tools/depmod.c, depfile_up_to_date)."""

from __future__ import annotations

import os
import stat

from lkm.config.depmod import LogFn
from lkm.depmod.search import fake_fd
from lkm.kmod.names import has_module_extension as has_kmod_ext
from lkm.logprio import LOG_ERR


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
                log(LOG_ERR, f"fstatat({fake_fd(1)}, {name}): {e.strerror}\n")
                continue
            if stat.S_ISDIR(est.st_mode):
                err = walk(entry.path)
            elif stat.S_ISREG(est.st_mode):
                if not has_kmod_ext(name):
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

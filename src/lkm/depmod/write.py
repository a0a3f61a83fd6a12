"""Writing depmod's files in place: each under a temporary name, then renamed.

As tools/depmod.c (depmod_output): ``<name>.<pid>.<usec>.<sec>`` in the output
directory, renamed over ``<name>`` once complete, in kmod's order with kmod's messages
in kmod's order; whatever is not renamed (an error, an interruption) is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import NamedTuple

from lkm.depmod.errors import DepmodError
from lkm.depmod.output import OUTPUTS, output
from lkm.depmod.parallel import fork_helper, join_helper, kill_helper
from lkm.depmod.state import DepmodState
from lkm.errors import IndexError_
from lkm.index import Layout
from lkm.logprio import LOG_ERR

_INTERRUPTIONS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def write(d: DepmodState, outdir: str | None = None, layout: Layout = "postorder",
          create: bool = False) -> None:
    """Write every output into ``outdir`` (default: the module directory).

    Each file is written under a temporary name (kmod's ``<name>.<pid>.<usec>.<sec>``)
    and renamed in place, in kmod's order, with kmod's messages in kmod's order.  With
    more than one job, a forked helper writes the files made of the modules' aliases
    meanwhile.
    """
    dname = outdir or d.dirname
    if create:
        try:
            os.makedirs(dname, mode=0o755, exist_ok=True)
        except OSError as e:
            raise DepmodError(f"could not create directory {dname}: {e.strerror}\n") from e
    try:
        dfd = os.open(dname, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise DepmodError(f"could not open directory {dname}: {e.strerror}\n") from e
    now = time.time()
    sec = int(now)
    stamp = f"{os.getpid()}.{int((now - sec) * 1_000_000)}.{sec}"
    helper_names: tuple[str, ...] = ()
    if d.jobs > 1 and not d.warn_dups and hasattr(os, "fork"):
        # about half the work: everything made of the modules' aliases
        helper_names = ("modules.alias", "modules.alias.bin", "modules.softdep",
                        "modules.devname")
    results: dict[str, _Produced] = {}
    helper: tuple[int, int] | None = None
    try:
        if helper_names:
            # an interruption between the fork and the assignment would leave the helper
            # writing its temporary files after the cleanup below: hold signals off
            held = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTIONS)
            try:
                helper = fork_helper(lambda: [_produce(d, n, dname, dfd, stamp, layout)
                                              for n in helper_names])
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for name in OUTPUTS:
            if name not in helper_names:
                results[name] = _produce(d, name, dname, dfd, stamp, layout)
        if helper is not None:
            got = join_helper(helper)
            helper = None
            if got is None:
                raise DepmodError("an output process failed\n")
            results.update(zip(helper_names, got, strict=True))
        for name in OUTPUTS:
            res = results.pop(name)
            for prio, msg in res.messages:
                d.log(prio, msg)
            if res.error is not None:
                raise res.error
            if not res.written:
                continue
            tmp = f"{name}.{stamp}"
            try:
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError as e:
                _unlink_quiet(tmp, dfd)
                raise DepmodError(f"renameat({dname}, {tmp}, {dname}, {name}): "
                                  f"{e.strerror}\n") from e
    finally:
        if helper is not None:
            kill_helper(helper)
        for name in OUTPUTS:  # whatever was not renamed: an error or an interruption
            _unlink_quiet(f"{name}.{stamp}", dfd)
        os.close(dfd)


def _produce(d: DepmodState, name: str, dname: str, dfd: int, stamp: str, layout: Layout
             ) -> _Produced:
    """Compute output ``name`` and write it to its temporary file, keeping the
    messages for the caller to print in order."""
    messages: list[tuple[int, str]] = []
    saved = d.logger
    d.logger = lambda prio, msg: messages.append((prio, msg))
    tmp = f"{name}.{stamp}"
    try:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        try:
            fd = os.open(tmp, flags, 0o644, dir_fd=dfd)
        except OSError as e:
            d.log(LOG_ERR, f"openat({dname}, {tmp}, {flags:o}, 644): {e.strerror}\n")
            return _Produced(messages, False, None)
        try:
            try:
                data = output(d, name, layout)
            except IndexError_ as e:
                return _Produced(messages, False, DepmodError(str(e) + "\n"))
            _write_all(fd, data)
        except DepmodError as e:
            return _Produced(messages, False, e)
        finally:
            os.close(fd)
        return _Produced(messages, True, None)
    finally:
        d.logger = saved


class _Produced(NamedTuple):
    messages: list[tuple[int, str]]
    written: bool
    error: DepmodError | None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as e:
            raise DepmodError(f"Could not write index: {e.strerror}\n", LOG_ERR) from e
        view = view[n:]


def _unlink_quiet(name: str, dfd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dfd)

"""depmod's processes: module readers sharing a work queue, and a forked helper.

Reading the modules is most of a run, so it is shared out: the chunk numbers of the
module list go into a pipe, and each process (the main one included) takes the next
chunk when free, 4 bytes per read (reads of a pipe that small are atomic).  A reader
sends back what it read pickled, chunk by chunk.  :func:`fork_helper` runs one piece of
work in another process (depmod's output writer uses it for half of the files).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import io
import os
import signal
import struct
from collections.abc import Callable, Iterator
from typing import Any

from lkm.depmod.errors import DepmodError
from lkm.depmod.read import ModuleData, failed, read_module_data
from lkm.logprio import LOG_CRIT


def default_jobs() -> int:
    """Processes for reading modules: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def read_all(paths: list[str], detail: bool, jobs: int,
             meanwhile: Callable[[], None] | None = None,
             skip: frozenset[str] = frozenset()) -> list[ModuleData]:
    """read_module_data for every path (those in ``skip`` fail with EINVAL unread),
    split over ``jobs`` processes (fork); the main process runs ``meanwhile`` once the
    others have started."""
    if skip:
        todo = [p for p in paths if p not in skip]
        got = iter(read_all(todo, detail, jobs, meanwhile))
        return [failed(_errno.EINVAL) if p in skip else next(got) for p in paths]
    if jobs <= 1 or len(paths) < 64 or not hasattr(os, "fork"):
        if meanwhile is not None:
            meanwhile()
        return [read_module_data(p, detail) for p in paths]
    import pickle

    # a work queue: chunk numbers in a pipe, each read of 4 bytes takes one (reads of a
    # pipe are atomic), so that whichever process is free takes the next chunk
    size = max(16, -(-len(paths) // 8192))
    chunks = -(-len(paths) // size)
    queue_r, queue_w = os.pipe()
    try:
        os.write(queue_w, struct.pack(f"<{chunks}I", *range(chunks)))
    finally:
        os.close(queue_w)

    def take() -> Iterator[int]:
        while True:
            got = os.read(queue_r, 4)
            if len(got) < 4:
                return
            yield struct.unpack("<I", got)[0]

    results: list[ModuleData | None] = [None] * len(paths)
    children: list[tuple[int, int]] = []  # (pid, read end of its result pipe)
    try:
        for _w in range(1, jobs):
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # a reader: take chunks, send what it read pickled, exit
                code = 1
                try:
                    os.close(r)
                    # each chunk pickled as soon as read: the pickling is shared out
                    # with the reading instead of delaying the end
                    mine = [pickle.dumps((c, [_pack(read_module_data(p, detail))
                                              for p in paths[c * size:(c + 1) * size]]),
                                         protocol=pickle.HIGHEST_PROTOCOL) for c in take()]
                    with os.fdopen(wfd, "wb") as f:
                        f.writelines(mine)
                    code = 0
                except BaseException:
                    pass
                finally:
                    os._exit(code)
            os.close(wfd)
            children.append((pid, r))
        if meanwhile is not None:
            meanwhile()
        for c in take():
            for k in range(c * size, min((c + 1) * size, len(paths))):
                results[k] = read_module_data(paths[k], detail)
        for pid, r in children:
            with os.fdopen(r, "rb") as rf:
                payload = rf.read()
            _, status = os.waitpid(pid, 0)
            if status != 0 or not payload:
                raise DepmodError("a module reader process failed\n", LOG_CRIT)
            stream = io.BytesIO(payload)
            while stream.tell() < len(payload):
                c, packed = pickle.load(stream)
                results[c * size:c * size + len(packed)] = [_unpack(t) for t in packed]
    except BaseException:
        for pid, _r in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        raise
    finally:
        os.close(queue_r)
    out: list[ModuleData] = []
    for d in results:
        assert d is not None
        out.append(d)
    return out


def _pack(d: ModuleData) -> tuple[object, ...]:
    """ModuleData for the pipe: name lists joined (one string pickles much faster)."""
    return ("\0".join(d.exports), d.export_crcs, "\0".join(d.dep_names), d.dep_crcs,
            d.dep_weak, d.dotted, d.info, d.error, d.export_buckets)


def _unpack(t: tuple[Any, ...]) -> ModuleData:
    exports, export_crcs, dep_names, dep_crcs, dep_weak, dotted, info, error, buckets = t
    return ModuleData(exports.split("\0") if exports else [], export_crcs,
                      dep_names.split("\0") if dep_names else [], dep_crcs, dep_weak, dotted,
                      info, error, buckets)


def fork_helper(work: Callable[[], object]) -> tuple[int, int]:
    """Run ``work`` in a forked process; (pid, read end of the pipe of its pickled result)."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            payload = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as f:
                f.write(payload)
            code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def join_helper(helper: tuple[int, int]) -> Any:
    """The helper's result, or None if it failed."""
    import pickle

    pid, r = helper
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        return None
    return pickle.loads(payload)


def kill_helper(helper: tuple[int, int]) -> None:
    pid, r = helper
    with contextlib.suppress(OSError):
        os.close(r)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)

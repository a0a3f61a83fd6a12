"""Running a target on inputs: typed errors pass, anything else is a finding, and so is
an input over the target's time bound (an alarm interrupts it) or the memory cap
(RLIMIT_AS turns an absurd allocation into MemoryError, a finding).

Times are CPU times (the process's), so a loaded machine does not make findings.

A finding's key is the exception type and the innermost frame in lkm's source, so one
bug found a thousand times is reported once, with its smallest input kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from targets import Target


class TimeBound(Exception):
    """Raised by the alarm when one input runs past three times its target's time bound
    in CPU time (an endless loop); between one and three times it is a "slow" finding."""


@dataclass
class Finding:
    target: str
    key: str  # exception type @ innermost lkm frame
    message: str
    trace: str
    data: bytes
    count: int = 1


@dataclass
class Stats:
    target: str
    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # "ok" or the typed error
    seconds: float = 0.0  # wall time
    cpu_seconds: float = 0.0
    slowest: float = 0.0
    findings: dict[str, Finding] = field(default_factory=dict)

    peak_rss_mib: float = 0.0  # the process's peak resident set during the campaign
    mutator_errors: dict[str, int] = field(default_factory=dict)  # the harness's own bugs


def _reset_peak_rss() -> None:
    """Start a new peak RSS measure (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lkm_frame(tb: TracebackType | None) -> str:
    where = "?"
    while tb is not None:
        fn = tb.tb_frame.f_code.co_filename
        if "/lkm/" in fn and "/tests/" not in fn:
            where = f"{fn.rsplit('/lkm/', 1)[1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    def alarm(_sig: int, _frame: FrameType | None) -> None:
        raise TimeBound(f"over the time bound of {seconds} s")

    old = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)  # CPU time: the machine may be shared
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def limit_memory(mib: int) -> None:
    """Cap the address space of this process (a run over it raises MemoryError)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mib << 20
    if hard == resource.RLIM_INFINITY or cap < hard:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def run_one(target: Target, data: bytes, outcomes: dict[str, int] | None = None
            ) -> Finding | None:
    """Run one input: None when the target ended or raised an allowed error (counted in
    ``outcomes`` by type)."""
    t0 = time.process_time()
    outcome = "ok"
    try:
        with time_bound(target.time_bound * 3):
            target.run(data)
    except target.allowed as e:
        outcome = type(e).__name__
    except Exception as e:
        key = f"{type(e).__name__} @ {_lkm_frame(e.__traceback__)}"
        return Finding(target.name, key, f"{type(e).__name__}: {e}"[:500],
                       "".join(traceback.format_exception(e)), data)
    spent = time.process_time() - t0
    if outcomes is not None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if spent > target.time_bound:
        return Finding(target.name, "slow", f"took {spent:.2f} s (bound {target.time_bound} s)",
                       "", data)
    return None


def campaign(target: Target, seed: int, count: int | None = None,
             seconds: float | None = None, on_finding: object = None,
             on_progress: object = None, every: int = 5000) -> Stats:
    """Run ``count`` inputs (or for ``seconds``, whichever ends first) made with
    ``random.Random(seed)``; ``on_progress(stats)`` every ``every`` inputs."""
    rng = random.Random(seed)
    st = Stats(target.name)
    target.make(random.Random(0))  # the seeds are read before the measures start
    _reset_peak_rss()
    start, cpu0 = time.perf_counter(), time.process_time()
    while (count is None or st.inputs < count) and (
            seconds is None or time.perf_counter() - start < seconds):
        try:
            data = target.make(rng)
        except Exception as e:  # (a bug of the mutators: counted, not lkm's)
            where = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} @ {Path(where.filename).name}:{where.lineno}"
            st.mutator_errors[key] = st.mutator_errors.get(key, 0) + 1
            if sum(st.mutator_errors.values()) > 1000:
                raise
            continue
        t0 = time.process_time()
        f = run_one(target, data, st.outcomes)
        st.slowest = max(st.slowest, time.process_time() - t0)
        st.inputs += 1
        if callable(on_progress) and st.inputs % every == 0:
            st.seconds = time.perf_counter() - start
            st.cpu_seconds = time.process_time() - cpu0
            st.peak_rss_mib = _peak_rss_mib()
            on_progress(st)
        if f is not None:
            old = st.findings.get(f.key)
            if old is None:
                st.findings[f.key] = f
                if callable(on_finding):
                    on_finding(f)
            else:
                old.count += 1
                if len(f.data) < len(old.data):
                    old.data, old.message, old.trace = f.data, f.message, f.trace
    st.seconds = time.perf_counter() - start
    st.cpu_seconds = time.process_time() - cpu0
    st.peak_rss_mib = _peak_rss_mib()
    return st


def save(f: Finding, outdir: Path) -> Path:
    """Write a finding's input and traceback under ``outdir/<target>/``."""
    d = outdir / f.target
    d.mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha1(f.key.encode()).hexdigest()[:10]
    (d / f"{stem}.bin").write_bytes(f.data)
    (d / f"{stem}.txt").write_text(f"{f.key}\n{f.message}\ncount {f.count}\n\n{f.trace}")
    return d / f"{stem}.bin"

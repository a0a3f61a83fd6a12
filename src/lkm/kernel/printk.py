"""Kernel log records, as printk stores them (level + text), and dmesg's rendering."""

from __future__ import annotations

from dataclasses import dataclass

# printk levels (include/linux/kern_levels.h)
KERN_EMERG = 0
KERN_ALERT = 1
KERN_CRIT = 2
KERN_ERR = 3
KERN_WARNING = 4
KERN_NOTICE = 5
KERN_INFO = 6
KERN_DEBUG = 7

LEVEL_NAMES = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")


@dataclass(frozen=True)
class LogRecord:
    """One line of the kernel log."""

    level: int
    text: str
    seq: int = 0
    usec: int = 0  # timestamp in microseconds since "boot"
    pending: bool = False  # not finalized yet: readers do not see it

    def to_json(self) -> list[object]:
        v: list[object] = [self.level, self.text, self.seq, self.usec]
        if self.pending:
            v.append(1)
        return v

    @classmethod
    def from_json(cls, v: list[object]) -> LogRecord:
        level, text, seq, usec = v[:4]
        assert isinstance(level, int) and isinstance(text, str)
        assert isinstance(seq, int) and isinstance(usec, int)
        return cls(level, text, seq, usec, len(v) > 4)


class Printk:
    """A sink for log lines: collects (level, text) in the order printed.

    ``once`` keys implement pr_*_once.
    """

    def __init__(self, once: set[str] | None = None) -> None:
        self.records: list[tuple[int, str]] = []
        self.once: set[str] = once if once is not None else set()

    def log(self, level: int, text: str) -> None:
        """One printk: one record (an embedded newline stays in it, as in the kernel)."""
        self.records.append((level, text[:-1] if text.endswith("\n") else text))

    def err(self, text: str) -> None:
        self.log(KERN_ERR, text)

    def warn(self, text: str) -> None:
        self.log(KERN_WARNING, text)

    def notice(self, text: str) -> None:
        self.log(KERN_NOTICE, text)

    def info(self, text: str) -> None:
        self.log(KERN_INFO, text)

    def log_once(self, key: str, level: int, text: str) -> None:
        """pr_*_once: print only the first time this call site is reached."""
        if key in self.once:
            return
        self.once.add(key)
        self.log(level, text)

    @property
    def lines(self) -> list[str]:
        return [t for _, t in self.records]


def kmsg_escape(s: str) -> str:
    """Text as /dev/kmsg shows it: control characters and DEL as \\xNN."""
    if all(" " <= c < "\x7f" for c in s):
        return s
    return "".join(c if " " <= c < "\x7f" or ord(c) > 0x7f else f"\\x{ord(c):02x}" for c in s)


def append_records(log: list[LogRecord], seq: int, lines: list[tuple[int, str]], usec: int,
                   limit: int) -> int:
    """Store printk records in ``log`` (as /dev/kmsg escapes them); returns the last
    sequence number.  A text longer than a record holds (``limit``) is cut, loses its
    final newline and so stays unfinalized (unseen by readers) until the next record,
    as the kernel's printk ring buffer does."""
    if not lines:
        return seq
    for level, text in lines:
        if log and log[-1].pending:
            last = log[-1]
            log[-1] = LogRecord(last.level, last.text, last.seq, last.usec)
        seq += 1
        log.append(LogRecord(level, kmsg_escape(text[:limit]), seq, usec, len(text) > limit))
    return seq


def record_text_max(version: tuple[int, int, int]) -> int:
    """Longest text a record keeps: LOG_LINE_MAX (992, 6.1) or PRINTKRB_RECORD_MAX (1024,
    6.10+) less the terminating NUL and the 2-byte level prefix printk_sprint strips."""
    return (1024 if version[:2] >= (6, 10) else 992) - 3


def format_dmesg(rec: LogRecord) -> str:
    """A record as dmesg prints it: ``[    1.234567] text`` (\\x0a: a new line)."""
    text = rec.text.replace("\\x0a", "\n")
    return f"[{rec.usec // 1000000:5d}.{rec.usec % 1000000:06d}] {text}"

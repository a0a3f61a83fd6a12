"""What one printk() call stores in the kernel log: kernel/printk/printk.c vprintk_store(),
printk_sprint() and printk_parse_prefix(), include/linux/kern_levels.h and printk.h.

printk formats first (vsprintf.py) and reads its level from the formatted text, so a level can
come from an argument.  Of the first 7 bytes, each KERN_SOH pair sets the level (the first digit
wins) or marks KERN_CONT; all the pairs at the start are stripped from the stored text, and one
trailing newline, which makes the record final (LOG_NEWLINE).  A record without it stays open:
readers (dmesg, /dev/kmsg) do not see it until it is final, and the next KERN_CONT printk of the
same caller (the task's pid) appends to it while the record stays within its size limit;
any other printk finalizes it.  Newlines inside the text stay in the one record (/dev/kmsg shows
them as \\x0a; `dmesg -r` prints ``<level>`` of facility 0 before each record).
"""

from __future__ import annotations

from dataclasses import dataclass

KERN_SOH = b"\x01"
KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR = b"\x010", b"\x011", b"\x012", b"\x013"
KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = b"\x014", b"\x015", b"\x016", b"\x017"
KERN_DEFAULT = b""
KERN_CONT = b"\x01c"

LOGLEVEL_DEFAULT = -1
# CONFIG_MESSAGE_LOGLEVEL_DEFAULT in Debian's 6.1 and 6.12 configs: printk without a level
MESSAGE_LOGLEVEL_DEFAULT = 4

# enum printk_info_flags
LOG_NEWLINE = 2
LOG_CONT = 8


def printk_get_level(buf: bytes) -> int:
    """The level character ('0'-'7' or 'c') of a KERN_SOH pair at the start, or 0."""
    if len(buf) >= 2 and buf[0] == 1 and buf[1] in b"01234567c":
        return buf[1]
    return 0


def printk_skip_level(buf: bytes) -> bytes:
    return buf[2:] if printk_get_level(buf) else buf


def printk_skip_headers(buf: bytes) -> bytes:
    while printk_get_level(buf):
        buf = buf[2:]
    return buf


def printk_parse_prefix(text: bytes) -> tuple[int, int, int]:
    """(level or LOGLEVEL_DEFAULT, LOG_CONT or 0, length) of the KERN_SOH pairs that start a
    C string (it ends at the first NUL)."""
    text = text.split(b"\0", 1)[0]
    level, flags, n = LOGLEVEL_DEFAULT, 0, 0
    while kern_level := printk_get_level(text[n:]):
        if kern_level == ord("c"):
            flags |= LOG_CONT
        elif level == LOGLEVEL_DEFAULT:
            level = kern_level - 0x30
        n += 2
    return level, flags, n


def printkrb_record_max(version: tuple[int, ...]) -> int:
    """Bytes a record may take with its NUL: LOG_LINE_MAX = CONSOLE_LOG_MAX (1024) - PREFIX_MAX
    (32 without CONFIG_PRINTK_CALLER) = 992 before 6.3; PRINTKRB_RECORD_MAX = 1024 since."""
    return 1024 if version[:2] >= (6, 3) else 992


def printk_sprint(formatted: bytes, size: int) -> tuple[bytes, int]:
    """The text stored of a formatted message given ``size`` bytes of room (vscnprintf):
    one trailing newline (LOG_NEWLINE) and the level/KERN_CONT prefix stripped."""
    text = formatted[:max(size - 1, 0)]
    flags = 0
    if text.endswith(b"\n"):
        text, flags = text[:-1], LOG_NEWLINE
    return text[printk_parse_prefix(text)[2]:], flags


@dataclass(frozen=True)
class OpenRecord:
    """The newest record of the log while it is not final (stored without LOG_NEWLINE)."""

    caller_id: int  # the task's pid (printk_caller_id() in task context)
    text_len: int  # bytes of text it holds (before /dev/kmsg's escaping)


@dataclass(frozen=True)
class Stored:
    """What one printk does to the log: extend the open record or add a new one."""

    append: bool  # True: ``text`` extends the open record, whose level stays
    level: int  # the new record's level (0-7)
    text: bytes
    flags: int  # LOG_NEWLINE: the record is final; LOG_CONT: it was a continuation
    ret: int  # what printk() returns: the bytes of text stored

    @property
    def final(self) -> bool:
        return bool(self.flags & LOG_NEWLINE)

    @property
    def cont(self) -> bool:
        """The record carries LOG_CONT (/dev/kmsg's 'c' flag)."""
        return bool(self.flags & LOG_CONT)


def vprintk_store(formatted: bytes, version: tuple[int, ...], *, caller_id: int = 0,
                  last: OpenRecord | None = None, level: int = LOGLEVEL_DEFAULT,
                  default_message_loglevel: int = MESSAGE_LOGLEVEL_DEFAULT,
                  dev_info: bool = False) -> Stored:
    """One printk's effect on the log, from its formatted output (unbounded).

    ``last`` is the log's open record, if any; ``level`` a level given by the caller
    (vprintk_emit's argument: dev_printk_emit passes one, printk does not); ``dev_info`` (the
    dev_* printers) makes the record final whatever its text.  The text is cut to the record's
    room before the prefix is stripped, so a long message loses its trailing newline and stays
    open, as in the kernel.
    """
    record_max = printkrb_record_max(version)
    reserve_size = min(len(formatted) + 1, record_max)
    plevel, flags, _n = printk_parse_prefix(formatted[:7])
    if level == LOGLEVEL_DEFAULT:
        level = plevel
    if level == LOGLEVEL_DEFAULT:
        level = default_message_loglevel
    if dev_info:
        flags |= LOG_NEWLINE
    append = (bool(flags & LOG_CONT) and last is not None and last.caller_id == caller_id
              and last.text_len + reserve_size <= record_max)
    text, nl = printk_sprint(formatted, reserve_size)
    return Stored(append, level & 7, text, flags | nl, len(text))


def msg_add_ext_text(text: bytes) -> str:
    """A record's text as /dev/kmsg shows it: bytes below 0x20, from 0x7f up, and the
    backslash as \\xNN (util-linux dmesg turns them back into the bytes when it prints)."""
    return "".join(chr(c) if 0x20 <= c < 0x7F and c != 0x5C else f"\\x{c:02x}" for c in text)

"""glibc's ``fnmatch(pattern, string, 0)``, as libkmod matches the wildcard keys of an
index (index_searchwild) and the patterns of modprobe.d."""

from __future__ import annotations

import re

_CLASSES: dict[bytes, bytes] = {
    b"alpha": b"a-zA-Z",
    b"digit": b"0-9",
    b"alnum": b"a-zA-Z0-9",
    b"upper": b"A-Z",
    b"lower": b"a-z",
    b"space": b" \\t\\n\\r\\f\\v",
    b"blank": b" \\t",
    b"punct": re.escape(bytes(c for c in range(33, 127)
                              if not chr(c).isalnum())),
    b"print": b" -~",
    b"graph": b"!-~",
    b"cntrl": b"\\x00-\\x1f\\x7f",
    b"xdigit": b"0-9A-Fa-f",
}
_NEVER = re.compile(b"(?!)")
_fnmatch_cache: dict[bytes, re.Pattern[bytes]] = {}


def _class_char(c: int) -> bytes:
    return b"\\" + bytes((c,)) if c in b"\\]^-[" else bytes((c,))


def _bracket(pat: bytes, i: int) -> tuple[bytes, int] | None:
    """Translate the bracket expression whose ``[`` is at ``pat[i - 1]``.

    Returns (regex, index after ``]``), or None if the bracket is unterminated
    (glibc then matches ``[`` literally).
    """
    n = len(pat)
    negate = i < n and pat[i] in b"!^"
    if negate:
        i += 1
    parts: list[bytes] = []
    first = True
    while True:
        if i >= n:
            return None
        c = pat[i]
        if c == 0x5D and not first:  # ']'
            i += 1
            break
        first = False
        if c == 0x5B and i + 1 < n and pat[i + 1] == 0x3A:  # "[:class:]"
            end = pat.find(b":]", i + 2)
            if end < 0:
                return None
            cls = _CLASSES.get(pat[i + 2:end])
            if cls is None:
                return _NEVER.pattern, n  # glibc: invalid class never matches
            parts.append(cls)
            i = end + 2
            continue
        if c == 0x5C:  # backslash escapes inside brackets too
            if i + 1 >= n:
                return None
            i += 1
            c = pat[i]
        i += 1
        # a range "c-d" unless '-' is followed by ']' or the end
        if i + 1 < n and pat[i] == 0x2D and pat[i + 1] != 0x5D:
            hi = pat[i + 1]
            i += 2
            if hi == 0x5C and i < n:
                hi = pat[i]
                i += 1
            if c <= hi:
                parts.append(_class_char(c) + b"-" + _class_char(hi))
            continue
        parts.append(_class_char(c))
    body = b"".join(parts)
    if not body:
        return (b"[\\x00-\\xff]" if negate else _NEVER.pattern), i
    return b"[" + (b"^" if negate else b"") + body + b"]", i


def fnmatch_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Compile a POSIX ``fnmatch(pattern, s, 0)`` pattern (glibc rules) to a regex."""
    rx = _fnmatch_cache.get(pattern)
    if rx is not None:
        return rx
    out: list[bytes] = []
    i, n = 0, len(pattern)
    never = False
    while i < n:
        c = pattern[i]
        i += 1
        if c == 0x2A:  # '*'
            out.append(b".*")
        elif c == 0x3F:  # '?'
            out.append(b".")
        elif c == 0x5C:  # backslash
            if i >= n:
                never = True  # a trailing backslash never matches
                break
            out.append(re.escape(pattern[i:i + 1]))
            i += 1
        elif c == 0x5B:  # '['
            got = _bracket(pattern, i)
            if got is None:
                out.append(b"\\[")
            else:
                out.append(got[0])
                i = got[1]
        else:
            out.append(re.escape(bytes((c,))))
    rx = _NEVER if never else re.compile(b"".join(out), re.DOTALL)
    if len(_fnmatch_cache) > 4096:
        _fnmatch_cache.clear()
    _fnmatch_cache[pattern] = rx
    return rx


def fnmatch(pattern: bytes, string: bytes) -> bool:
    """glibc ``fnmatch(pattern, string, 0) == 0``."""
    if b"?" not in pattern and b"[" not in pattern and b"\\" not in pattern:
        return _star_match(pattern, string)
    return fnmatch_regex(pattern).fullmatch(string) is not None


def _star_match(pattern: bytes, string: bytes) -> bool:
    """fnmatch for patterns whose only special character is ``*`` (most device aliases),
    without compiling a regex: leftmost matching of the pieces between stars."""
    parts = pattern.split(b"*")
    if len(parts) == 1:
        return pattern == string
    first, last = parts[0], parts[-1]
    end = len(string) - len(last)
    if len(first) > end or not string.startswith(first) or not string.endswith(last):
        return False
    pos = len(first)
    for part in parts[1:-1]:
        if part:
            i = string.find(part, pos, end)
            if i < 0:
                return False
            pos = i + len(part)
    return True

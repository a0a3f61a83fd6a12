"""Test helper: concrete strings that module alias patterns match."""

from __future__ import annotations

from collections.abc import Callable


def concrete(pattern: str, fill: str | Callable[[], str], spare: str = "0Zz_~") -> str:
    """A string the fnmatch ``pattern`` matches: '*' becomes ``fill`` (or what ``fill()``
    returns, called once per '*'), '?' a '0', a bracket expression its first member (or
    the first character of ``spare`` it excludes)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(fill if isinstance(fill, str) else fill())
        elif c == "?":
            out.append("0")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(c)
            else:
                body = pattern[i + 1:end]
                if body[:1] in ("!", "^"):
                    out.append(next(ch for ch in spare if ch not in body[1:]))
                else:
                    out.append(body[0])
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(pattern[i])
        else:
            out.append(c)
        i += 1
    return "".join(out)

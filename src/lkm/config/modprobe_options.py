"""$MODPROBE_OPTIONS: the extra arguments kmod's modprobe takes from its environment
(tools/modprobe.c, prepend_options_from_env)."""

from __future__ import annotations


def split_modprobe_options(env: str) -> list[str]:
    """Split $MODPROBE_OPTIONS into arguments as kmod's modprobe does.

    Spaces separate arguments; a quoted argument loses its quotes (an argument
    opening with a quote ends at the closing one), and a quote pair inside an
    argument is removed.
    """
    s = list(env)
    args: list[str] = []
    start = 0
    quote = -1
    i = 0
    end = len(s)
    while i < end:
        c = s[i]
        if quote < 0:
            if c == " ":
                args.append("".join(s[start:i]))
                start = i + 1
            elif c in "\"'":
                quote = i
        elif c == s[quote]:
            if quote == start:
                args.append("".join(s[start + 1:i]))
                start = i + 1
            else:
                del s[i]
                del s[quote]
                end -= 2
                i -= 2
            quote = -1
        i += 1
    if start < i:
        args.append("".join(s[start:i]))
    return args

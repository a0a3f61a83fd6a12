"""The kernel command line as libkmod reads it for module options
(libkmod/libkmod-config.c, kmod_config_parse_kcmdline)."""

from __future__ import annotations

from collections.abc import Iterator

# the kernel's COMMAND_LINE_SIZE as libkmod reads /proc/cmdline (KCMD_LINE_SIZE)
KCMD_LINE_SIZE = 4096


def kcmdline_options(text: str) -> Iterator[tuple[str, str, str | None]]:
    """(module, ``param[=value]``, value or None) of each ``mod.param[=value]`` word.

    Follows libkmod's state machine: a quote may open an option (``"mod.p=v w"``) or
    its value (``mod.p="v w"``); anything else ill-formed is skipped.  The text is cut
    at :data:`KCMD_LINE_SIZE` - 1 bytes and at a NUL, as libkmod's read of /proc/cmdline.
    """
    raw = text.encode("utf-8", "surrogateescape")[:KCMD_LINE_SIZE - 1]
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    buf = bytearray(raw) + b"\0"
    ignore, s_modname, s_param, s_value, complete = range(5)
    state = s_modname
    quoted = False
    quote_start = -1
    modname = 0
    param = value = -1
    p = 0
    running = True
    while running:
        c = buf[p]
        if c == 0x22:  # '"'
            quoted = not quoted
            if quoted and state == s_modname and p == modname:
                quote_start = p
                modname = p + 1
            elif state != s_value:
                state = ignore
        elif c in b"\0 \n\t\v\f\r":
            if c == 0:
                running = False
            if quoted and state == s_value:
                pass
            elif quoted:
                state = ignore
            elif state in (s_value, s_param):
                buf[p] = 0
                state = complete
            else:
                modname = p + 1
                state = s_modname
                quote_start = -1
        elif c == 0x2E:  # '.'
            if state == s_modname:
                buf[p] = 0
                param = p + 1
                state = s_param
            elif state == s_param:
                state = ignore
        elif c == 0x3D:  # '='
            if state == s_param:
                value = p + 1
                state = s_value
            elif state == s_modname:
                state = ignore
        if state == complete:
            if 0 <= quote_start < modname:
                buf[quote_start:value - 1] = buf[modname:value]
                value -= 1
                modname -= 1
                param -= 1
                buf[value] = 0x22
            yield (_cstr(buf, modname), _cstr(buf, param),
                   _cstr(buf, value) if value >= 0 else None)
            modname = p + 1
            state = s_modname
            quote_start = -1
        p += 1


def _cstr(buf: bytearray, start: int) -> str:
    end = buf.find(0, start)
    return bytes(buf[start:end if end >= 0 else len(buf)]).decode("utf-8", "surrogateescape")

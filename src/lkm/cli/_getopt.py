"""glibc's ``getopt_long``, the option parser of kmod's tools (tools/*.c call it in a loop).

One parser for every kmod-compatible tool (modinfo, modprobe, insmod, rmmod, lsmod,
depmod); lkm's own commands use argparse.  The behaviour is glibc 2.36's (Debian 12,
posix/getopt.c):

- GNU permutation: options and operands may be mixed; operands keep their order.
  A ``+`` at the start of ``shortopts`` or ``$POSIXLY_CORRECT`` stops at the first
  operand instead.
- ``--`` ends the options; what follows is operands (after those met before it).
- ``-`` alone is an operand.
- Short options: ``x`` (no argument), ``x:`` (required: the rest of the word or the
  next word), ``x::`` (optional: only the rest of the word).
- Long options: ``--name``, ``--name=value``, ``--name value`` (required arguments
  only); an exact name wins, else an unambiguous prefix.  Prefixes of several
  options are ambiguous unless all of them report the same key with the same
  argument kind.  Options lkm adds to a kmod tool match only by their whole name.
- Errors carry glibc's exact text (``prog`` is argv[0]).

A bad option is not raised: it ends the option list as ``("?", message)``, because
getopt reports it only when the tool's loop reaches it (``modinfo -V -x`` prints
the version, ``modinfo -x -V`` the error).  The caller prints the message then.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

NO_ARGUMENT = 0
REQUIRED_ARGUMENT = 1
OPTIONAL_ARGUMENT = 2

# what getopt_long reports for a bad option (its return value '?')
BAD_OPTION = "?"


class LongOpt:
    """``struct option``: a long option's name, its argument kind and the key reported
    for it (the short option letter, or any string the tool switches on).

    ``exact`` marks an option lkm adds to a kmod tool: it is recognised only by its
    whole name, so that no prefix resolves or fails differently from kmod.
    (A plain class: a NamedTuple costs every tool's start-up a fraction of a ms.)
    """

    __slots__ = ("exact", "has_arg", "key", "name")

    def __init__(self, name: str, has_arg: int, key: str, exact: bool = False) -> None:
        self.name = name
        self.has_arg = has_arg
        self.key = key
        self.exact = exact

    def __repr__(self) -> str:
        return f"LongOpt({self.name!r}, {self.has_arg}, {self.key!r}, exact={self.exact})"


Option = tuple[str, str | None]


def getopt_long(prog: str, argv: Sequence[str], shortopts: str,
                longopts: Sequence[LongOpt] = ()) -> tuple[list[Option], list[str]]:
    """Parse ``argv`` (without argv[0]) as glibc's getopt_long does.

    :param prog: argv[0], the program name glibc's messages start with.
    :param argv: the arguments after argv[0].
    :param shortopts: getopt's option string (``"ab:c::"``; a leading ``+`` stops
        at the first operand).
    :param longopts: the long options, in the order of the tool's ``struct option``
        array (the order ambiguity messages list them in).
    :returns: ``(options, operands)``: options as ``(key, argument or None)`` in the
        order given; a bad option ends them as ``("?", glibc's message without the
        newline)``.  Operands are the non-option arguments, permuted behind the
        options as glibc does.
    """
    posix = shortopts.startswith("+") or "POSIXLY_CORRECT" in os.environ
    short = _short_table(shortopts.lstrip("+-:"))
    opts: list[Option] = []
    operands: list[str] = []
    args = list(argv)
    k = 0
    while k < len(args):
        a = args[k]
        k += 1
        if a == "--":
            operands.extend(args[k:])
            break
        if a.startswith("--"):
            k = _long_option(prog, a[2:], args, k, longopts, opts)
        elif not a.startswith("-") or a == "-":
            operands.append(a)
            if posix:
                operands.extend(args[k:])
                break
            continue
        else:
            k = _short_options(prog, a, args, k, short, opts)
        if opts and opts[-1][0] == BAD_OPTION:
            break
    return opts, operands


def _short_table(shortopts: str) -> dict[str, int]:
    """Each option character of a getopt string with its argument kind."""
    table: dict[str, int] = {}
    i = 0
    while i < len(shortopts):
        c = shortopts[i]
        n = 0
        while n < 2 and i + 1 + n < len(shortopts) and shortopts[i + 1 + n] == ":":
            n += 1
        table[c] = n
        i += 1 + n
    return table


def _short_options(prog: str, word: str, args: list[str], k: int, short: dict[str, int],
                   opts: list[Option]) -> int:
    """One ``-abc`` word (``k`` indexes the next word); returns the next index."""
    j = 1
    while j < len(word):
        c = word[j]
        j += 1
        kind = short.get(c)
        if kind is None or c in ":;":
            opts.append((BAD_OPTION, f"{prog}: invalid option -- '{c}'"))
            return k
        if kind == NO_ARGUMENT:
            opts.append((c, None))
            continue
        if j < len(word):
            opts.append((c, word[j:]))
        elif kind == OPTIONAL_ARGUMENT:
            opts.append((c, None))
        elif k < len(args):
            opts.append((c, args[k]))
            k += 1
        else:
            opts.append((BAD_OPTION, f"{prog}: option requires an argument -- '{c}'"))
        return k
    return k


def _long_option(prog: str, body: str, args: list[str], k: int, longopts: Sequence[LongOpt],
                 opts: list[Option]) -> int:
    """One ``--name[=value]`` word, ``body`` without the dashes; returns the next index."""
    name, eq, value = body.partition("=")
    opt = next((o for o in longopts if o.name == name), None)
    if opt is None:
        # glibc: the first option the prefix matches, unless a later match reports
        # something else; the message names the first and every differing one
        matches = [o for o in longopts if o.name.startswith(name) and not o.exact]
        if not matches:
            opts.append((BAD_OPTION, f"{prog}: unrecognized option '--{body}'"))
            return k
        opt = matches[0]
        differing = [o for o in matches[1:] if (o.has_arg, o.key) != (opt.has_arg, opt.key)]
        if differing:
            poss = "".join(f" '--{o.name}'" for o in (opt, *differing))
            opts.append((BAD_OPTION,
                         f"{prog}: option '--{body}' is ambiguous; possibilities:{poss}"))
            return k
    if eq:
        if opt.has_arg == NO_ARGUMENT:
            opts.append((BAD_OPTION, f"{prog}: option '--{opt.name}' doesn't allow an argument"))
        else:
            opts.append((opt.key, value))
    elif opt.has_arg == REQUIRED_ARGUMENT:
        if k < len(args):
            opts.append((opt.key, args[k]))
            k += 1
        else:
            opts.append((BAD_OPTION, f"{prog}: option '--{opt.name}' requires an argument"))
    else:
        opts.append((opt.key, None))
    return k


__all__ = ["BAD_OPTION", "NO_ARGUMENT", "OPTIONAL_ARGUMENT", "REQUIRED_ARGUMENT", "LongOpt",
           "Option", "getopt_long"]

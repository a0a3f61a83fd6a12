"""Mutators for modprobe.d, depmod.d and the kernel command line: lines made from each
grammar's directives and awkward tokens, then line- and byte-level damage (continuations,
comments, NULs, non-UTF-8, long lines)."""

from __future__ import annotations

import random

from mutate import havoc

_NAMES = ("snd_hda_intel", "snd-hda-intel", "e1000e", "a", "*", "snd*", "pci:v00008086d*",
          "usb:v*p*d*dc*dsc*dp*ic03isc01ip*in*", "[", "[a-z]*", "a[!b]c", "x?", "\\", "-",
          "_", "...", "a.b", "mod=", "\xe9t\xe9", "\udcff", "a" * 300, "")
_OPTS = ("p=1", "index=-2,-1", "model=auto", 'p="a b"', "p=\"unterminated", "a b c", "=",
         "p", "x=" + "9" * 40)
_CMDS = ("/bin/true", "/sbin/modprobe --ignore-install $CMDLINE_OPTS", "echo $(uname)", "")
MAX_CONFIG = 4 << 20  # bytes: large enough to show quadratic parsing, small enough to run

_SOFT = ("pre: a b post: c", "pre:", "post: x", "pre: post:", "a b c", ": :", "pre:a")


def _tok(rng: random.Random, pool: tuple[str, ...]) -> str:
    t = rng.choice(pool)
    if rng.random() < 0.1:
        t = t.replace("_", "-") if rng.random() < 0.5 else t.upper()
    return t


def modprobe_line(rng: random.Random) -> str:
    cmd = rng.choice(("alias", "options", "install", "remove", "softdep", "blacklist",
                      "include", "config", "#", "", "alias\t", "ALIAS", "opt"))
    args: list[str]
    if cmd.startswith("alias"):
        args = [_tok(rng, _NAMES), _tok(rng, _NAMES)]
    elif cmd == "options":
        args = [_tok(rng, _NAMES)] + [_tok(rng, _OPTS) for _ in range(rng.randint(0, 3))]
    elif cmd in ("install", "remove"):
        args = [_tok(rng, _NAMES), _tok(rng, _CMDS)]
    elif cmd == "softdep":
        args = [_tok(rng, _NAMES), _tok(rng, _SOFT)]
    else:
        args = [_tok(rng, _NAMES) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.2:
        args = args[:rng.randrange(len(args) + 1)]
    sep = rng.choice((" ", "\t", "  ", " \t "))
    return sep.join([cmd, *args])


def depmod_line(rng: random.Random) -> str:
    cmd = rng.choice(("search", "override", "external", "exclude", "include",
                      "make_map_files", "#", "", "bogus"))
    vers = ("*", "6.1.0-57-amd64", "6.1.*", "^6\\.1", "(a|b)*c", "[", "(", "a{1000}",
            "\\", "6.*.*", "(a*)*b", "[[:alpha:]]+", "x\\{2,\\}")
    pools = {"search": ("updates", "built-in", "external", "kernel", "extra", "/abs", "..",
                        "a/../b"),
             "override": ("e1000e",), "external": vers, "exclude": (".git", "build", "*")}
    args: list[str] = []
    if cmd == "override":
        args = [rng.choice(_NAMES), rng.choice(vers), rng.choice(("updates", "extra", ""))]
    elif cmd == "external":
        args = [rng.choice(vers), rng.choice(("/tmp/x", "", "rel", "/"))]
    elif cmd in pools:
        args = [rng.choice(pools[cmd]) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.2:
        args = args[:rng.randrange(len(args) + 1)]
    return rng.choice((" ", "\t")).join([cmd, *args])


def config_file(rng: random.Random, depmod: bool, seed: bytes = b"") -> bytes:
    """A configuration file: generated lines (or the seed's), then damage."""
    lines = seed.split(b"\n") if seed and rng.random() < 0.4 else []
    line = depmod_line if depmod else modprobe_line
    for _ in range(rng.randint(1, 12)):
        lines.insert(rng.randint(0, len(lines)),
                     line(rng).encode("utf-8", "surrogateescape"))
    for _ in range(rng.randint(0, 3)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0:
            lines[i] += b"\\"  # continued onto the next line
        elif op == 1:
            lines[i] = b"#" + lines[i]
        elif op == 2:
            lines[i] += rng.choice((b"\0", b"\r", b"\xff", b" \\ ", b"\\\\", b"\t#x"))
        elif op == 3 and len(lines[i]) < 4096:
            lines[i] = lines[i] * rng.randint(2, 600)
        elif op == 4:
            lines.insert(i, b"")
        else:
            lines[i] = havoc(rng, lines[i])
    out = b"\n".join(lines)[:MAX_CONFIG]
    return out if rng.random() < 0.8 else out.rstrip(b"\n") + rng.choice((b"", b"\\"))


def kernel_cmdline(rng: random.Random, seed: str = "") -> str:
    """A kernel command line with module options, quotes and modprobe.blacklist=."""
    words: list[str] = seed.split() if seed and rng.random() < 0.5 else []
    for _ in range(rng.randint(1, 10)):
        mod = _tok(rng, _NAMES)
        param = rng.choice(("p", "index", "a.b", "", "blacklist", "debug", "x-y", "="))
        value = rng.choice(("1", "", "a,b", '"a b"', '"', "= =", "x" * 50, "'q'", "\\\""))
        form = rng.randrange(8)
        if form == 0:
            w = f"{mod}.{param}={value}"
        elif form == 1:
            w = f"{mod}.{param}"
        elif form == 2:
            w = f"modprobe.blacklist={mod},{_tok(rng, _NAMES)}"
        elif form == 3:
            w = f'"{mod}.{param}={value}"'
        elif form == 4:
            w = f"{mod}.{param}=\"{value}"
        elif form == 5:
            w = rng.choice(("quiet", "ro", "root=/dev/sda1", "--", "init=/bin/sh", "."))
        elif form == 6:
            w = f".{param}={value}"
        else:
            w = f"{mod}..{param}"
        words.insert(rng.randint(0, len(words)), w)
    sep = rng.choice((" ", "  ", "\t", "\n", " \x00 "))
    text = sep.join(words)
    if rng.random() < 0.2:
        text = havoc(rng, text.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape")
    return text

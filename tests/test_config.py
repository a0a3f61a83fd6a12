"""modprobe.d parsing, the kernel command line and $MODPROBE_OPTIONS (lkm.config).

Unit tests on crafted text, then the kernel command line parser against kmod 30:
/proc/cmdline is replaced in a private mount namespace (``unshare -m``), where
both modprobes print ``-c``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KMOD, LKM
from lkm.config import (
    ModprobeConfig,
    Softdep,
    split_modprobe_options,
    underscores,
    wrapped_lines,
)

# --------------------------------------------------------------------------- reading lines


def test_wrapped_lines() -> None:
    assert list(wrapped_lines(b"")) == []
    assert list(wrapped_lines(b"\n")) == [(1, "")]
    assert list(wrapped_lines(b"a\nb")) == [(1, "a"), (2, "b")]
    # a continued line is numbered by its last physical line
    assert list(wrapped_lines(b"a \\\nb\nc\n")) == [(2, "a b"), (3, "c")]
    # a backslash before anything else is dropped, the byte kept
    assert list(wrapped_lines(b"a\\b\\\\c\n")) == [(1, "ab\\c")]
    # continuation at end of file ends the line; alone it ends the file
    assert list(wrapped_lines(b"x\\\n")) == [(2, "x")]
    assert list(wrapped_lines(b"x\n\\\n")) == [(1, "x")]
    # a backslash at end of file becomes getc's EOF stored in a char (0xff)
    assert list(wrapped_lines(b"x\\")) == [(1, "x\udcff")]
    # a NUL ends the C string
    assert list(wrapped_lines(b"ab\0cd\nef\n")) == [(1, "ab"), (2, "ef")]


def test_underscores() -> None:
    assert underscores("a-b-c") == "a_b_c"
    assert underscores("pci:v[0-9]-x") == "pci:v[0-9]_x"
    assert underscores("a]b") is None
    assert underscores("a[b") is None
    assert underscores(None) is None


def test_softdep_plain() -> None:
    """modprobe -c prints the span from the first to the last name of each kind."""
    sd = Softdep.parse("m", "pre: a b post: c")
    assert (sd.pre, sd.post) == (("a", "b"), ("c",))
    assert sd.plain() == "pre: a bpost: c"
    sd = Softdep.parse("m", " x post: a pre: b\tpost: c pre: d ")
    assert (sd.pre, sd.post) == (("b", "d"), ("a", "c"))
    assert sd.plain() == "pre: b c dpost: a b c"
    assert Softdep.parse("m", "nothing here").plain() == ""


def test_parse_directives() -> None:
    cfg = ModprobeConfig()
    cfg.parse(b"alias a-b c-d\noptions m-x  a=1\tb=2 \ninstall i-x /bin/true $CMDLINE_OPTS\n"
              b"remove r /bin/false\nblacklist b-l\nsoftdep s pre: p post: q\n"
              b"include x\nconfig y\nbogus z\nalias onlyone\noptions nooptions\n"
              b"# comment\n  # not a comment\n", "f.conf")
    assert cfg.aliases == [("a_b", "c_d")]
    assert cfg.options == [("m_x", " a=1 b=2 ")]
    assert cfg.install_commands == [("i_x", "/bin/true $CMDLINE_OPTS")]
    assert cfg.remove_commands == [("r", "/bin/false")]
    assert cfg.blacklists == ["b_l"]
    assert [(s.name, s.pre, s.post) for s in cfg.softdeps] == [("s", ("p",), ("q",))]
    assert [m[3] for m in cfg.messages] == [
        "f.conf: command include is deprecated and not parsed anymore\n",
        "f.conf: command config is deprecated and not parsed anymore\n",
        "f.conf line 9: ignoring bad line starting with 'bogus'\n",
        "f.conf line 10: ignoring bad line starting with 'alias'\n",
        "f.conf line 11: ignoring bad line starting with 'options'\n",
        "f.conf line 13: ignoring bad line starting with '#'\n",
    ]


def test_queries() -> None:
    cfg = ModprobeConfig()
    cfg.parse(b"install e1000* first\ninstall e1000e second\nsoftdep snd* pre: a\n"
              b"softdep snd_hda pre: b\noptions m x=1\noptions al y=2\noptions m z=3\n"
              b"alias al m\nalias a* n\n", "f")
    assert cfg.install_command("e1000e") == "first"
    assert cfg.install_command("e100") is None
    sd = cfg.softdep("snd_hda")
    assert sd is not None and sd.pre == ("a",)
    assert cfg.module_options("m") == "x=1 z=3"
    assert cfg.module_options("m", "al") == "x=1 y=2 z=3"
    assert cfg.module_options("q") is None
    assert cfg.matching_aliases("al") == [("al", "m"), ("a*", "n")]


def test_list_files(tmp_path: Path) -> None:
    """Sorted by name; the first directory holding a name wins; .conf and .alias only;
    modules.softdep of the module directory among them."""
    a, b, moddir = tmp_path / "a", tmp_path / "b", tmp_path / "mod"
    for d in (a, b, moddir):
        d.mkdir()
    for name in ("20-x.conf", "10-y.alias", ".h.conf", "z.txt", "s.conf"):
        (a / name).write_text("")
    (b / "20-x.conf").write_text("")
    (b / "n.conf").write_text("")
    (b / "sub.conf").mkdir()
    single = tmp_path / "single.cfg"
    single.write_text("")
    cfg = ModprobeConfig()
    files = cfg.list_files([str(a), str(b), str(single), str(tmp_path / "missing")],
                           str(moddir))
    assert files == [f"{a}/10-y.alias", f"{a}/20-x.conf", f"{moddir}/modules.softdep",
                     f"{b}/n.conf", f"{a}/s.conf", str(single)]
    assert [m[3] for m in cfg.messages] == [
        f"Directories inside directories are not supported: {b}/sub.conf\n"]


def test_split_modprobe_options() -> None:
    assert split_modprobe_options("-n -v") == ["-n", "-v"]
    assert split_modprobe_options("-n  -v") == ["-n", "", "-v"]
    assert split_modprobe_options('"-n" -v') == ["-n", "", "-v"]
    assert split_modprobe_options("a='b c'd e") == ["a=b cd", "e"]
    assert split_modprobe_options("'x y'z") == ["x y", "z"]
    assert split_modprobe_options("") == []


# --------------------------------------------------------------------------- kernel command line


def test_kcmdline_unit() -> None:
    cfg = ModprobeConfig()
    cfg.parse_kcmdline('a.b=1 "c.d=x y" e.f="g h" modprobe.blacklist=x,,y bad]n.x=1 m.p\n')
    assert cfg.options == [("a", "b=1"), ("c", 'd="x y"'), ("e", 'f="g h"'), ("m", "p")]
    assert cfg.blacklists == ["x", "", "y"]
    assert [m[3] for m in cfg.messages] == [
        "Ignoring bad option on kernel command line while parsing module name: 'bad]n'\n"]


CMDLINES = [
    'a.b=1 "c.d=x y" e.f="g h" modprobe.blacklist=x,,y bad-.name=1 -- z.q=1',
    'mod.p mod.=v .p=1 m.a.b=1 "m.q"=1 m=1 "x.y=1 2"z p."q=1" m.p="unterminated',
    'a]b.c=1 ok.x=1 [x.y=2 q[.r=3',
    'parport.dyndbg="file drivers/parport/ieee1284_ops.c +mpf" '
    '"parport.dyndbg=file drivers/parport/ieee1284_ops.c +mpf"',
    "a.b=1\tc.d=2\nx.y=3\r\vz.w=4",
    "",
    "modprobe.blacklist= modprobe.blacklist=a,b modprobe.blacklist=c modprobe.other=1",
    "k.v=" + "x" * 5000 + " after.cut=1",
    'q.r="a b"c s.t="" "u.v= w.x="y z" "',
    "BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet snd-hda-intel.model=auto i915.modeset=1",
]


needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")


def _with_cmdline(cmdline: Path, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    script = 'mount --bind "$0" /proc/cmdline && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(cmdline), *argv],
                          capture_output=True, timeout=120)


@needs_unshare
@pytest.mark.kmod
def test_kcmdline_against_kmod(tmp_path: Path) -> None:
    """Options and blacklists from the command line, and the messages of bad ones."""
    empty = tmp_path / "moddir"
    empty.mkdir()
    for n, text in enumerate(CMDLINES):
        f = tmp_path / f"cmdline{n}"
        f.write_text(text + "\n")
        args = ["-C", "/dev/null", "-d", str(empty), "-S", "1", "-c"]
        argv0 = "import os, sys; os.execv(sys.argv[1], ['modprobe', *sys.argv[2:]])"
        k = _with_cmdline(f, [sys.executable, "-c", argv0, KMOD["modprobe"], *args])
        m = _with_cmdline(f, [LKM, "modprobe", *args])
        if k.returncode != 0 and b"unshare" in k.stderr:
            pytest.skip(f"unshare failed: {k.stderr.decode()}")
        assert (m.returncode, m.stdout, m.stderr) == (k.returncode, k.stdout, k.stderr), text


@pytest.mark.kmod
def test_config_paths_against_kmod(tmp_path: Path) -> None:
    """-C with several directories and files: order, duplicates, bad files, sub-dirs,
    lines ending at end of file."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "20-x.conf").write_text("alias from-a-20 dummy\n")
    (b / "20-x.conf").write_text("alias from-b-20 dummy\n")
    (b / "10-y.alias").write_text("alias from-b-10 dummy\nsoftdep q pre: r\n")
    (b / "sub.conf").mkdir()
    (a / "bin.conf").write_bytes(b"alias \xff\xfe-bytes dummy\n\x00\nalias a\tb\n")
    (a / "long.conf").write_text("options x " + "y=1 " * 3000 + "\n")
    # freadline_wrapped at end of file: a last backslash is read as (char)EOF, 0xff
    (a / "eof-alias.conf").write_bytes(b"alias eof-x dummy\\")
    (a / "eof-bad.conf").write_bytes(b"options m a=1\nbogus\\")
    (a / "eof-cont.conf").write_bytes(b"blacklist cont \\\n")
    single = tmp_path / "one.cfg"
    single.write_text("blacklist single\nalias from-single dummy\n")
    empty = tmp_path / "moddir"
    empty.mkdir()
    (empty / "modules.softdep").write_text("softdep from_moddir pre: x\nbad line\n")
    args = ["-C", str(a), "-C", str(b), "-C", str(single), "-C", str(tmp_path / "missing"),
            "-d", str(tmp_path), "-S", "moddir", "-c"]
    # -d root/lib/modules/REL: make the module directory there
    (tmp_path / "lib" / "modules").mkdir(parents=True)
    (tmp_path / "lib" / "modules" / "moddir").symlink_to(empty)
    k = subprocess.run(["modprobe", *args], executable=KMOD["modprobe"], capture_output=True)
    m = subprocess.run([LKM, "modprobe", *args], capture_output=True)
    assert (m.returncode, m.stdout, m.stderr) == (k.returncode, k.stdout, k.stderr)

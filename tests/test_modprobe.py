"""lkm modprobe against Debian's kmod 30 modprobe, on the real 6.1 and 6.12 trees.

Every case runs both tools with the same arguments and environment and compares
stdout, stderr (libkmod's messages with the source positions of Debian's debug
build, as lkm prints them too) and the exit status byte for byte; only pointers
in libkmod's INFO messages are made equal.
Nothing here loads or unloads a module: queries (-D, -R, -c), dry runs (-n) and
install/remove commands that only echo.  Real loads are in test_live.py (QEMU).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from aliases import concrete
from conftest import KMOD, LKM, Tree

pytestmark = [pytest.mark.trees, pytest.mark.kmod]



_POINTER = re.compile(r"(function|context) 0x[0-9a-f]+ ")


def normalise_stderr(text: str) -> str:
    """stderr with the pointers some libkmod INFO messages print made equal."""
    return _POINTER.sub(r"\1 0xPTR ", text)


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        argv0: str | None = None) -> tuple[int, bytes, str]:
    p = subprocess.run([argv0 or cmd[0], *cmd[1:]], executable=cmd[0], capture_output=True,
                       env=env, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def both(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
         tool: str = "modprobe") -> tuple[int, bytes, str]:
    """Run kmod's and lkm's ``tool``; assert they agree; return kmod's result."""
    k = run([KMOD[tool], *args], env, cwd, argv0=tool)  # argv[0] as lkm's tools call it
    m = run([LKM, tool, *args], env, cwd)
    what = f"{tool} {' '.join(args)[:300]}"
    assert m[0] == k[0], f"exit status differs for {what}: kmod {k[0]}, lkm {m[0]}\n{m[2]}"
    if m[1] != k[1]:
        kl, ml = k[1].splitlines(), m[1].splitlines()
        first = next((i for i, (a, b) in enumerate(zip(kl, ml, strict=False)) if a != b),
                     min(len(kl), len(ml)))
        pytest.fail(f"stdout differs for {what} at line {first + 1}:\n"
                    f"kmod: {kl[first:first + 3]!r}\nlkm:  {ml[first:first + 3]!r}\n"
                    f"({len(kl)} vs {len(ml)} lines)")
    assert normalise_stderr(m[2]) == normalise_stderr(k[2]), f"stderr differs for {what}"
    return k


def tree_args(tree: Tree) -> list[str]:
    return ["-d", str(tree.kmod_root), "-S", tree.release]


def module_names(tree: Tree) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (tree.kmod_moddir / "kernel").rglob("*.ko*"))


# --------------------------------------------------------------------------- whole trees


def test_show_depends_every_module(tree: Tree) -> None:
    """-a -D over every module of the tree in one call (names as file names, with '-')."""
    rc, out, _err = both([*tree_args(tree), "-a", "-D", *module_names(tree)])
    assert rc == 0 and out.count(b"\n") > len(module_names(tree))


def modaliases(tree: Tree, count: int = 2500) -> list[str]:
    """``count`` concrete aliases made from the tree's modules.alias patterns."""
    lines = (tree.kmod_moddir / "modules.alias").read_text().splitlines()
    pats = [line.split()[1] for line in lines if line.startswith("alias ")]
    step = max(1, len(pats) // count)
    fills = ("", "0", "1A", "FFFF", "x")
    out = []
    for n, pat in enumerate(pats[::step][:count]):
        out.append(concrete(pat, fills[n % len(fills)]))
    return out


def test_resolve_alias_modaliases(tree: Tree) -> None:
    """-R over a few thousand modaliases (some match several patterns, some none)."""
    aliases = modaliases(tree)
    aliases += ["usb:v0000p0000d0000dc00dsc00dp00ic00isc00ip00in00", "nonexistent-alias",
                "symbol:jbd2_journal_start", "bad]alias", "char-major-10-237"]
    _rc, out, _err = both([*tree_args(tree), "-a", "-R", *aliases])
    assert out.count(b"\n") >= len(aliases) // 2


def test_show_depends_modaliases(tree: Tree) -> None:
    """-D over the same modaliases: every module each one resolves to, with its deps."""
    both([*tree_args(tree), "-a", "-D", *modaliases(tree, 1500)])


def test_show_config_tree(tree: Tree) -> None:
    """-c with the tree: configuration, then the alias and symbol index dumps."""
    _rc, out, _err = both([*tree_args(tree), "-c"])
    assert b"# End of configuration files. Dumping indexes now:" in out


# --------------------------------------------------------------------------- configuration

CONFIG = r"""# every directive, and bad lines
alias lkmtest-alias dummy
alias lkmtest-wild* loop
alias lkmtest-multi dummy
alias lkmtest-multi loop
alias lkmtest-blk* nbd
alias lkmtest-[ab]x tun
alias lkmtest-dash-name veth
options dummy numdummies=3
options lkmtest-alias from_alias=1
options loop max_loop=8	max_part=4
options  loop   extra=1
install lkmtest-inst /bin/echo installing $CMDLINE_OPTS [$MODPROBE_MODULE]
install ext4 /bin/echo ext4-install $CMDLINE_OPTS
install e1000* /bin/echo e1000-family $CMDLINE_OPTS
install veth /bin/echo veth $CMDLINE_OPTS; /bin/false
install lkmtest-env /bin/echo env=[$MODPROBE_OPTIONS] [$MODPROBE_MODULE]
remove lkmtest-rm /bin/echo removing $CMDLINE_OPTS
remove dummy /bin/echo rm-dummy [$MODPROBE_MODULE]
blacklist nbd
blacklist lkmtest-bl
blacklist tun
softdep loop pre: dummy post: nbd
softdep xfs pre: crc32c_generic lkmtest-alias post: lkmtest-missing
softdep btrfs post: xor pre: raid6_pq
softdep jbd2 pre: crc32c_generic
softdep ext4 pre: lkmtest-inst
softdep ext4 pre: ignored-second-line
softdep bonding post: bad]dep lkmtest-multi
softdep nothing-here
include /etc/foo
config bar
foo bar
alias onlyone
options nooptions
alias bad]name x
blacklist
install
remove x
softdep lo\
op2 pre: \
dummy
  # indented comment
	alias	tabbed-alias	dummy
"""

NAMES = ["lkmtest-alias", "lkmtest-wild-x", "lkmtest-multi", "lkmtest-blkdev", "nbd", "dummy",
         "loop", "ext4", "xfs", "btrfs", "lkmtest-inst", "lkmtest-rm", "e1000e", "lkmtest-ax",
         "tun", "lkmtest-dash-name", "veth", "bonding", "snd-hda-intel",
         "symbol:jbd2_journal_start", "nonexistent-mod", "tabbed-alias", "loop2",
         "snd_hda_codec_realtek"]


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("modprobe.d")
    (d / "50-lkmtest.conf").write_text(CONFIG)
    (d / "10-first.conf").write_text("options dummy first=1\nalias lkmtest-multi veth\n")
    (d / "60-noline-end.alias").write_text("alias lkmtest-noeol dummy")
    (d / ".hidden.conf").write_text("alias lkmtest-hidden dummy\n")
    (d / "ignored.txt").write_text("alias lkmtest-ignored dummy\n")
    (d / "sub.conf").mkdir()
    (d / "trailing.conf").write_bytes(b"options dummy tail=1 \\")
    return d


def extra_names(tree: Tree) -> list[str]:
    """A built-in module and a built-in alias of the tree."""
    builtin = (tree.kmod_moddir / "modules.builtin").read_text().split()
    names = [Path(builtin[0]).name.split(".")[0], Path(builtin[-1]).name.split(".")[0]]
    mi = (tree.kmod_moddir / "modules.builtin.modinfo").read_bytes().split(b"\0")
    for s in mi:
        if b".alias=" in s:
            names.append(concrete(s.split(b".alias=", 1)[1].decode(), "0"))
            break
    return names


def test_show_config_every_directive(tree: Tree, confdir: Path) -> None:
    both(["-C", str(confdir), *tree_args(tree), "-c"])


@pytest.mark.parametrize("flags", [["-n", "-v"], ["-n", "-v", "-b"], ["-D"], ["-D", "-b"],
                                   ["-n", "-v", "-i"], ["-R"], ["-n", "-vv"], ["-n", "-q"],
                                   ["-n", "-v", "--first-time"]],
                         ids=lambda f: "".join(f))
def test_dry_run_names(tree: Tree, confdir: Path, flags: list[str]) -> None:
    """Names reached through aliases, options, install commands, softdeps, blacklists."""
    both(["-C", str(confdir), *tree_args(tree), *flags, "-a", *NAMES, *extra_names(tree)])


@pytest.mark.parametrize("name", ["lkmtest-alias", "loop", "nbd", "lkmtest-blkdev", "ext4",
                                  "nonexistent-mod", "lkmtest-rm", "bad]alias", "-"])
def test_dry_run_one(tree: Tree, confdir: Path, name: str) -> None:
    """One name without -a: a missing one is FATAL; module options after the name."""
    both(["-C", str(confdir), *tree_args(tree), "-n", "-v", name, "a=1", "b=x y", "c='q r'"])


def test_install_commands_run(tree: Tree, confdir: Path) -> None:
    """install commands run through the shell with $CMDLINE_OPTS and MODPROBE_MODULE;
    -v shows them (buffered stdout against the command's own output); failures."""
    base = ["-C", str(confdir), *tree_args(tree)]
    both([*base, "lkmtest-inst", "x=1", "y=two words"])
    both([*base, "-v", "lkmtest-inst"])
    both([*base, "-v", "e1000e", "opt=1"])
    both([*base, "veth"])  # the command fails: "Error running install command"
    both([*base, "-v", "-q", "-s", "lkmtest-env"])  # the tool's options reach the command
    both([*base, "-a", "-v", "lkmtest-inst", "e1000e", "veth", "lkmtest-inst"])


def test_remove_dry_run(tree: Tree, confdir: Path) -> None:
    """-r plans: remove commands, softdeps, builtin modules, --first-time (dry runs only)."""
    base = ["-C", str(confdir), *tree_args(tree)]
    for args in (["-r", "-n", "-v", "lkmtest-rm"], ["-r", "-v", "lkmtest-rm"],
                 ["-r", "-v", "dummy"], ["-r", "-n", "-v", "nonexistent-mod"],
                 ["-r", "-n", "-v", "--first-time", "xfs"],
                 ["-r", "-n", "-v", "-a", "xfs", "btrfs", "lkmtest-rm"],
                 ["-r", "-n", "-v", extra_names(tree)[0]],
                 ["-r", "-n", "-D", "-v", "ext4"], ["-r", "-n", "-i", "-v", "dummy"]):
        both([*base, *args])


def test_modprobe_options_env(tree: Tree, confdir: Path) -> None:
    """$MODPROBE_OPTIONS is split (quotes honoured) and put before the arguments."""
    env = dict(os.environ)
    for value in ("-n -v", "-n  -v", "-n '-v'", '"-n" -v', "-n -v -C" + str(confdir),
                  '-n -"v"', "-q"):
        env["MODPROBE_OPTIONS"] = value
        both([*tree_args(tree), "-C", str(confdir), "lkmtest-alias"], env=env)


def test_show_versions_and_exports(tree: Tree) -> None:
    mods = [p for p in sorted((tree.kmod_moddir / "kernel").rglob("*.ko*"))][::400]
    for p in mods:
        both(["--show-modversions", str(p)])
        both(["--show-exports", str(p)])
    both(["--dump-modversions", "/nonexistent.ko"])
    both(["--show-exports", "/etc/hostname"])


def test_usage_errors(tree: Tree, tmp_path: Path) -> None:
    for args in ([], ["-q"], ["--bogus"], ["-Z"], ["-C"], ["--config"], ["-w", "x", "loop"],
                 ["--remove-h", "-n", "-q", "nothing"], ["--rem", "x"], ["--show=1", "x"],
                 ["--sh=1", "x"], ["--rem=3"], ["--ignore-", "-n", "-q", "x"], ["--=x"],
                 ["-V"], ["--help"]):
        both(args)
    both([*tree_args(tree), "-n", "-v", "loop"], cwd=tmp_path)
    both(["-d", "relative/root", "-S", "1.2.3", "-n", "loop"], cwd=tmp_path)
    both(["-S", "0.0-none", "-n", "-v", "loop"])
    both(["-S", "", "-n", "-v", "loop"])  # <root>/lib/modules/<release> even when empty
    both(["-d", "", "-n", "-v", "loop"])


def test_insmod_rmmod_lsmod_errors(tmp_path: Path) -> None:
    """The tools' own checks, without touching the kernel."""
    (tmp_path / "short.ko").write_bytes(b"\x7fELF")
    (tmp_path / "random.ko").write_bytes(os.urandom(4096))
    (tmp_path / "trunc.ko.xz").write_bytes(b"\xfd7zXZ\x00" + os.urandom(200))
    (tmp_path / "trunc.ko.zst").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(200))
    both([], tool="insmod")
    both(["-"], tool="insmod")
    both(["/nonexistent.ko"], tool="insmod")
    # none of these can load (the kernel refuses them, or they fail before the kernel)
    for f in ("short.ko", "random.ko", "trunc.ko.xz", "trunc.ko.zst"):
        both([str(tmp_path / f), "a=1"], tool="insmod")
    both(["/dev/zero"], tool="insmod")
    both([str(tmp_path)], tool="insmod")
    both([], tool="rmmod")
    both(["lkm_surely_not_loaded"], tool="rmmod")
    both(["-x"], tool="rmmod")
    both(["x"], tool="lsmod")


def test_damaged_indexes(tree: Tree, tmp_path: Path) -> None:
    """Missing or garbage index files behave as empty ones."""
    root = tmp_path / "root"
    moddir = root / "lib" / "modules" / tree.release
    moddir.mkdir(parents=True)
    for f in ("modules.dep", "modules.softdep", "modules.builtin"):
        (moddir / f).write_bytes((tree.kmod_moddir / f).read_bytes())
    (moddir / "modules.dep.bin").write_bytes(b"not an index at all, just bytes")
    (moddir / "modules.alias.bin").write_bytes(b"\xb0\x07\xf4\x57" + b"\0" * 4)
    args = ["-d", str(root), "-S", tree.release]
    both([*args, "-a", "-D", "ext4", "dummy", "pci:v00008086d00001234sv0sd0bc0sc0i0"])
    both([*args, "-R", "snd-hda-intel"])
    both([*args, "-c"])

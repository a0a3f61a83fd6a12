"""kernel/params.py against kernel/params.c, lib/kstrtox.c and lib/cmdline.c (6.1 and 6.12)."""

from __future__ import annotations

import errno

import pytest

from lkm.kernel.params import (
    KERNEL_PARAM_FL_UNSAFE,
    KernelParam,
    kstrto,
    kstrtobool,
    kstrtoll,
    kstrtoull,
    next_arg,
    param_get,
    param_set,
    parse_args,
    sysfs_store,
)
from lkm.kernel.printk import Printk

E = errno


@pytest.mark.parametrize("s,expect", [
    ("0", (0, 0)), ("10", (0, 10)), ("+10", (0, 10)), ("010", (0, 8)), ("0x10", (0, 16)),
    ("0X1f", (0, 31)), ("0x", (-E.EINVAL, 0)), ("0xg", (-E.EINVAL, 0)), ("08", (-E.EINVAL, 0)),
    ("10\n", (0, 10)), ("10\n\n", (-E.EINVAL, 0)), ("", (-E.EINVAL, 0)), (" 1", (-E.EINVAL, 0)),
    ("1 ", (-E.EINVAL, 0)), ("-1", (-E.EINVAL, 0)), ("18446744073709551615", (0, 2**64 - 1)),
    ("18446744073709551616", (-E.ERANGE, 0)), ("0xffffffffffffffff", (0, 2**64 - 1)),
    ("0x10000000000000000", (-E.ERANGE, 0)), ("++1", (-E.EINVAL, 0)),
])
def test_kstrtoull(s: str, expect: tuple[int, int]) -> None:
    assert kstrtoull(s) == expect


@pytest.mark.parametrize("s,expect", [
    ("-1", (0, -1)), ("-0", (0, 0)), ("-9223372036854775808", (0, -2**63)),
    ("-9223372036854775809", (-E.ERANGE, 0)), ("9223372036854775807", (0, 2**63 - 1)),
    ("9223372036854775808", (-E.ERANGE, 0)), ("-", (-E.EINVAL, 0)), ("-+1", (-E.EINVAL, 0)),
    ("+-1", (-E.EINVAL, 0)), ("-0x10", (0, -16)),
])
def test_kstrtoll(s: str, expect: tuple[int, int]) -> None:
    assert kstrtoll(s) == expect


@pytest.mark.parametrize("t,s,expect", [
    ("byte", "255", (0, 255)), ("byte", "256", (-E.ERANGE, 0)), ("byte", "-1", (-E.EINVAL, 0)),
    ("short", "-32768", (0, -32768)), ("short", "32768", (-E.ERANGE, 0)),
    ("ushort", "65535", (0, 65535)), ("ushort", "65536", (-E.ERANGE, 0)),
    ("int", "-2147483648", (0, -2**31)), ("int", "2147483648", (-E.ERANGE, 0)),
    ("uint", "4294967295", (0, 2**32 - 1)), ("uint", "4294967296", (-E.ERANGE, 0)),
    ("long", "-1", (0, -1)), ("ulong", "18446744073709551615", (0, 2**64 - 1)),
    ("hexint", "0xdeadbeef", (0, 0xDEADBEEF)),
])
def test_kstrto_types(t: str, s: str, expect: tuple[int, int]) -> None:
    assert kstrto(t, s) == expect


@pytest.mark.parametrize("s,expect", [
    ("y", (0, True)), ("Yes", (0, True)), ("t", (0, True)), ("1", (0, True)), ("on", (0, True)),
    ("ON", (0, True)), ("n", (0, False)), ("f", (0, False)), ("0x", (0, False)),
    ("off", (0, False)), ("oF", (0, False)), ("o", (-E.EINVAL, False)),
    ("2", (-E.EINVAL, False)), ("", (-E.EINVAL, False)), (None, (-E.EINVAL, False)),
])
def test_kstrtobool(s: str | None, expect: tuple[int, bool]) -> None:
    assert kstrtobool(s) == expect


@pytest.mark.parametrize("args,expect", [
    ("a=1 b", ("a", "1", "b")),
    ("a b", ("a", None, "b")),
    ('a="x y" b', ("a", "x y", "b")),
    ('"a=x y" b', ("a", "x y", "b")),
    ('a=x"y z"w c', ("a", 'x"y z"w', "c")),
    ("a=   b", ("a", "", "b")),
    ("=x y", ("=x", None, "y")),
    ("a==b", ("a", "=b", "")),
    ("a=\"\"", ("a", "", "")),
    ("a\tb", ("a", None, "b")),
    ('a="unterminated b', ("a", "unterminated b", "")),
])
def test_next_arg(args: str, expect: tuple[str, str | None, str]) -> None:
    assert next_arg(args) == expect


def mkparams() -> list[KernelParam]:
    return [
        KernelParam("myint", "int", 0o644, 0),
        KernelParam("mybyte", "byte", 0o444, 0),
        KernelParam("my_short", "short", 0o444, 0),
        KernelParam("myhex", "hexint", 0o644, 0),
        KernelParam("mybool", "bool", 0o644, False),
        KernelParam("myinv", "invbool", 0o644, False),
        KernelParam("mybint", "bint", 0o644, 0),
        KernelParam("myonly", "bool_enable_only", 0o644, False),
        KernelParam("mystr", "charp", 0o644, None),
        KernelParam("mycopy", "string", 0o644, "abc", maxlen=8),
        KernelParam("myarr", "array", 0o644, [0, 0, 0], elem_type="int", max=3, num=0),
        KernelParam("fixed_arr", "array", 0o444, [1, 2], elem_type="int", max=2, num=None),
        KernelParam("danger", "int", 0o644, 0, flags=KERNEL_PARAM_FL_UNSAFE),
    ]


def run(args: str) -> tuple[int, str | None, list[str], dict[str, KernelParam]]:
    params = mkparams()
    log = Printk()
    unknown: list[str] = []

    def cb(param: str, val: str | None) -> int:
        unknown.append(param)
        log.warn(f"m: unknown parameter '{param}' ignored")
        return 0

    err, after = parse_args("m", args, params, log, cb)
    return err, after, log.lines, {p.name: p for p in params}


def test_parse_ok_and_sysfs_formats() -> None:
    err, after, lines, p = run('myint=-5 mybyte=0x7f my-short=-3 myhex=255 mybool myinv=n '
                               'mybint=y mystr="hello world" mycopy=1234567 myarr=1,2 junk=1')
    assert err == 0 and after is None
    assert lines == ["m: unknown parameter 'junk' ignored"]
    got = {n: param_get(k) for n, k in p.items()}
    assert got["myint"] == "-5\n"
    assert got["mybyte"] == "127\n"
    assert got["my_short"] == "-3\n"
    assert got["myhex"] == "0x0000ff\n"
    assert got["mybool"] == "Y\n"
    assert got["myinv"] == "N\n"  # stores !n, shows it inverted
    assert got["mybint"] == "1\n"
    assert got["myonly"] == "N\n"
    assert got["mystr"] == "hello world\n"
    assert got["mycopy"] == "1234567\n"
    assert got["myarr"] == "1,2\n"
    assert got["fixed_arr"] == "1,2\n"


def test_defaults_print() -> None:
    p = {k.name: k for k in mkparams()}
    assert param_get(p["mystr"]) == "(null)\n"
    assert param_get(p["myhex"]) == "0x000000\n"
    assert param_get(p["myarr"]) == ""  # no element, no newline


def test_errors_continue_last_wins() -> None:
    err, _, lines, p = run("myint=x mybyte=300 mycopy=123456789 myint=7")
    assert err == -E.ENOSPC
    assert lines == ["m: `x' invalid for parameter `myint'",
                     "m: `300' invalid for parameter `mybyte'",
                     "mycopy: string doesn't fit in 7 chars.",
                     "m: `123456789' too large for parameter `mycopy'"]
    assert p["myint"].value == 7


def test_missing_value() -> None:
    err, _, lines, _ = run("myint")
    assert err == -E.EINVAL
    assert lines == ["m: `' invalid for parameter `myint'"]
    err, _, lines, _ = run("myinv")
    assert err == -E.EINVAL


def test_charp_too_long() -> None:
    err, _, lines, _ = run("mystr=" + "a" * 1025)
    assert err == -E.ENOSPC
    assert lines[0] == "mystr: string parameter too long"
    err, _, _, _p = run("mystr=" + "a" * 1024)
    assert err == 0


def test_array_limits() -> None:
    err, _, lines, _ = run("myarr=1,2,3,4")
    assert err == -E.EINVAL
    assert lines == ["myarr: can only take 3 arguments",
                     "m: `1' invalid for parameter `myarr'"]  # val cut at commas
    err, _, lines, _ = run("myarr=1,,3")
    assert err == -E.EINVAL
    err, _, lines, _p = run("myarr=")
    assert err == -E.EINVAL


def test_dashes() -> None:
    err, after, _lines, p = run("myint=1 -- myint=2 x")
    assert err == 0 and after == "myint=2 x"
    assert p["myint"].value == 1
    err, after, _, _ = run("myint=1 --")
    assert after == ""
    err, after, _, _ = run("myint=z -- a")
    assert err == -E.EINVAL and after is None


def test_enable_only_and_unsafe() -> None:
    p = {k.name: k for k in mkparams()}
    log = Printk()
    assert sysfs_store(p["myonly"], "1\n", log) == 0
    assert sysfs_store(p["myonly"], "0", log) == -E.EROFS
    assert param_get(p["myonly"]) == "Y\n"
    assert sysfs_store(p["mybyte"], "1", log) == -E.EACCES
    tainted: list[str] = []
    assert sysfs_store(p["danger"], "3\n", log, lambda kp: tainted.append(kp.name)) == 0
    assert log.lines == ["Setting dangerous option danger - tainting kernel"]
    assert tainted == ["danger"]
    assert param_set(p["mystr"], "x", log) == 0

"""/proc files of modules and seq_file (api/procfs.py, api/seq_file.py).

Unit tests on the made-up kernel of test_exec_api (kernel functions standing in for the
module's show), then the real Kbuild modules lkm_exec_proc_uptime and lkm_exec_proc_seq
in the virtual kernel of each tree, each ``lkm`` command its own process.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import ClassVar

import pytest

from lkm.kernel.api import core, seq_file
from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.exec.runtime import Runtime
from test_exec_api import FakeLayouts, make_runtime

SEQ_FIELDS = ("buf", "size", "from", "count", "pad_until", "index", "read_pos", "op",
              "file", "private")


class SeqLayouts(FakeLayouts):
    OFFSETS: ClassVar[dict[tuple[str, str], int]] = {
        **FakeLayouts.OFFSETS,
        **{("seq_file", f): 8 * i for i, f in enumerate(SEQ_FIELDS)},
        ("seq_operations", "start"): 0, ("seq_operations", "stop"): 8,
        ("seq_operations", "next"): 16, ("seq_operations", "show"): 24,
        ("file", "f_inode"): 32, ("file", "f_pos"): 64, ("file", "private_data"): 200,
        ("file", "f_mode"): 20,
    }
    SIZES: ClassVar[dict[str, int]] = {**FakeLayouts.SIZES, "seq_file": 128,
                                       "seq_operations": 32, "file": 256}


LINES = 200  # of 25 bytes: 5000, more than a page


@kfunc()
def lkm_test_big_show(k: Kernel, m: int, v: int) -> int:
    for i in range(LINES):
        seq_file.Seq(k, m).put(f"line {i:4d} ...............\n".encode())
    return 0


def _runtime() -> Runtime:
    rt, _ = make_runtime()
    rt.layouts = SeqLayouts()
    return rt


def _open_single(k: Kernel) -> tuple[int, int]:
    file = seq_file._kzalloc(k, 256)
    assert seq_file.single_open(k, file, k.symbol("lkm_test_big_show"), 0x1234) == 0
    m = k.mem.read_u64(file + 200)
    assert seq_file.Seq(k, m).get("private") == 0x1234
    return file, m


def test_a_record_larger_than_the_buffer_is_shown_again_in_a_bigger_one() -> None:
    k = _runtime().kernel
    _, m = _open_single(k)
    ubuf = seq_file.user_buffer(k)
    out, pos = b"", 0
    while True:
        n, pos = seq_file.read_iter(k, m, ubuf, 1000, pos)
        assert n >= 0
        if not n:
            break
        out += k.mem.read(ubuf, n)
    assert out == b"".join(f"line {i:4d} ...............\n".encode() for i in range(LINES))
    assert seq_file.Seq(k, m).get("size") == 8192


def test_reading_into_a_bad_user_buffer_is_efault() -> None:
    k = _runtime().kernel
    _, m = _open_single(k)
    n, pos = seq_file.read_iter(k, m, 0xFFFF888000000000, 100, 0)  # a kernel address
    assert (n, pos) == (-errno.EFAULT, 0)
    ubuf = seq_file.user_buffer(k)
    n, pos = seq_file.read_iter(k, m, ubuf, 100, 0)  # the record is still there
    assert n == 100 and k.mem.read(ubuf, 9) == b"line    0"


def test_user_copies() -> None:
    k = _runtime().kernel
    ubuf = seq_file.user_buffer(k)
    kbuf = seq_file._kzalloc(k, 64)
    k.mem.write(kbuf, b"hello")
    assert seq_file._copy_to_user(k, ubuf, kbuf, 5) == 0
    assert k.mem.read(ubuf, 5) == b"hello"
    assert seq_file._copy_to_user(k, 0x10, kbuf, 5) == 5  # unmapped: nothing copied
    end = ubuf + seq_file.USER_BUF_SIZE
    k.mem.write(end - 2, b"ab")
    k.mem.write(kbuf, b"\xff" * 8)
    assert seq_file._copy_from_user(k, kbuf, end - 2, 8) == 6  # the rest is zeroed
    assert k.mem.read(kbuf, 8) == b"ab" + bytes(6)


def test_seq_printf_overflow_marks_the_buffer_full() -> None:
    k = _runtime().kernel
    _, m = _open_single(k)
    s = seq_file.Seq(k, m)
    seq_file._new_buf(k, s, 16)
    fmt = k.rt.kdata_scratch(b"%s-%d\0")
    word = k.rt.kdata_scratch(b"abc\0")
    k.cpu = _Args([word, 42])  # type: ignore[assignment]
    seq_file.seq_printf(k, m, fmt)
    assert s.get("count") == 6 and k.mem.read(s.get("buf"), 6) == b"abc-42"
    seq_file.seq_puts(k, m, k.rt.kdata_scratch(b"0123456789\0"))
    assert s.overflowed()


class _Args:
    def __init__(self, values: list[int]) -> None:
        self.values = values

    def args(self, first: int = 0) -> _Args:
        return self

    def next(self) -> int:
        return self.values.pop(0)


def test_registered() -> None:
    for name in ("proc_create", "proc_create_data", "proc_create_single_data",
                 "proc_create_seq_private", "proc_mkdir", "proc_remove", "remove_proc_entry",
                 "seq_open", "single_open", "seq_read", "seq_lseek", "seq_release",
                 "single_release", "seq_printf", "seq_puts", "seq_putc", "seq_write",
                 "seq_list_start", "seq_list_next", "_copy_to_user", "_copy_from_user"):
        assert name in core.FUNCTIONS, name


# -- real modules in the virtual kernel -----------------------------------------------------------

@pytest.fixture(scope="module")
def kos(tree: object) -> dict[str, Path]:
    from kbuild import build_modules, headers_dir

    release = tree.release  # type: ignore[attr-defined]
    if headers_dir(release) is None:
        pytest.skip(f"no linux-headers for {release}")
    return build_modules(release, exec_modules=True)

@pytest.fixture
def vdir(tmp_path: Path, tree: object) -> Path:
    from lkm.kernel.profile import load_cached
    from lkm.kernel.virtual import VirtualKernel

    VirtualKernel.create(tmp_path / "vk", profile=load_cached(tree.root),  # type: ignore[attr-defined]
                         depmod=False)
    return tmp_path / "vk"


@pytest.mark.trees
class TestModules:
    def test_uptime_file(self, vdir: Path, kos: dict[str, Path]) -> None:
        from lkm.kernel.virtual import VirtualKernel
        from test_exec_modules import lkm

        assert lkm(vdir, "insmod", str(kos["lkm_exec_proc_uptime"])).returncode == 0
        first = lkm(vdir, "cat", "/proc/lkm_uptime")
        assert first.returncode == 0 and first.stdout.endswith("opened 1\nend\n")
        second = lkm(vdir, "cat", "/proc/lkm_uptime").stdout
        t1, t2 = (float(x.split()[1]) for x in (first.stdout, second))
        assert t2 > t1 and second.endswith("opened 2\nend\n")  # the virtual clock moved
        assert lkm(vdir, "write", "/proc/lkm_uptime", "tux").returncode == 0
        with pytest.raises(OSError) as e:
            VirtualKernel.open(vdir).write_text("/proc/lkm_uptime", "\n")
        assert e.value.errno == errno.EINVAL
        assert VirtualKernel.open(vdir).read_text("/proc/lkm_uptime").startswith("tux: ")
        assert lkm(vdir, "rmmod", "lkm_exec_proc_uptime").returncode == 0
        with pytest.raises(OSError) as e:
            VirtualKernel.open(vdir).read_text("/proc/lkm_uptime")
        assert e.value.errno == errno.ENOENT

    def test_seq_iterator_directory_and_growth(self, vdir: Path, kos: dict[str, Path]) -> None:
        from lkm.kernel.virtual import VirtualKernel
        from test_exec_modules import lkm

        assert lkm(vdir, "insmod", str(kos["lkm_exec_proc_seq"]), "big_lines=1000"
                   ).returncode == 0
        vk = VirtualKernel.open(vdir)
        assert vk.read_text("/proc/lkm_exec/items") == \
            "id name\n 1 alpha\n 2 beta\n 4 delta\n 5 epsilon\n"
        big = vk.read_text("/proc/lkm_exec/big").splitlines()
        assert len(big) == 1000 and big[-1] == "line 1000 of 1000 ......."
        assert vk.list_dir("/proc/lkm_exec") == ["items", "big"]
        with pytest.raises(OSError) as e:
            vk.read_text("/proc/lkm_exec")
        assert e.value.errno == errno.EISDIR
        with pytest.raises(OSError) as e:
            vk.write_text("/proc/lkm_exec/items", "x")
        assert e.value.errno == errno.EIO
        p = lkm(vdir, "rmmod", "lkm_exec_proc_seq")
        assert p.returncode == 0
        assert any("removed: 2 starts, 2 stops" in t for _, t in
                   ((r.level, r.text) for r in vk.log_records()))
        with pytest.raises(OSError) as e:
            vk.read_text("/proc/lkm_exec/items")
        assert e.value.errno == errno.ENOENT

    def test_misc_device_echoes_writes(self, vdir: Path, kos: dict[str, Path]) -> None:
        from lkm.kernel.virtual import VirtualKernel
        from test_exec_modules import lkm

        assert lkm(vdir, "insmod", str(kos["lkm_exec_misc"])).returncode == 0
        vk = VirtualKernel.open(vdir)
        assert vk.list_dir("/dev") == ["lkm_echo"]
        assert vk.read_text("/dev/lkm_echo") == "nothing written yet\n"
        vk.write_text("/dev/lkm_echo", "hello device\n")
        assert vk.read_text("/dev/lkm_echo") == "hello device\n"
        with pytest.raises(OSError) as e:
            vk.write_text("/dev/lkm_echo", "x" * 100)
        assert e.value.errno == errno.ENOSPC
        texts = [r.text for r in vk.log_records()]
        assert "lkm_exec_misc: open #2 of lkm_echo" in texts
        assert lkm(vdir, "rmmod", "lkm_exec_misc").returncode == 0
        assert "lkm_exec_misc: deregistered after 4 opens" in \
            [r.text for r in vk.log_records()]
        with pytest.raises(OSError) as e:
            vk.read_text("/dev/lkm_echo")
        assert e.value.errno == errno.ENOENT

    def test_dynamic_debug_control(self, vdir: Path, kos: dict[str, Path]) -> None:
        from lkm.kernel.virtual import VirtualKernel
        from test_exec_modules import lkm

        assert lkm(vdir, "insmod", str(kos["lkm_exec_loglevel"]), "loglevel=3").returncode == 0
        vk = VirtualKernel.open(vdir)
        lines = vk.read_text("/proc/dynamic_debug/control").splitlines()
        assert lines[0] == "# filename:lineno [module]function flags format"
        exit_line = next(ln for ln in lines if "lkm_exec_loglevel_exit" in ln)
        assert exit_line.endswith(' =_ "debug: unloaded\\n"')
        assert "lkm_exec_loglevel.c:" in exit_line and "[lkm_exec_loglevel]" in exit_line
        vk.write_text("/proc/dynamic_debug/control",
                      "module lkm_exec_loglevel func lkm_exec_loglevel_exit +p")
        assert ' =p "debug: unloaded' in vk.read_text("/proc/dynamic_debug/control")
        with pytest.raises(OSError) as e:
            vk.write_text("/proc/dynamic_debug/control", "nonsense")
        assert e.value.errno == errno.EINVAL
        assert lkm(vdir, "rmmod", "lkm_exec_loglevel").returncode == 0
        assert "lkm_exec_loglevel: debug: unloaded" in [r.text for r in vk.log_records()]

    def test_version_and_printk(self, vdir: Path, tree: object) -> None:
        from lkm.kernel.virtual import VirtualKernel

        vk = VirtualKernel.open(vdir)
        text = vk.read_text("/proc/version")
        assert text.startswith(f"Linux version {tree.release} (")  # type: ignore[attr-defined]
        assert text.endswith("\n") and "gcc" in text
        assert vk.read_text("/proc/sys/kernel/printk") == "7\t4\t1\t7\n"

    def test_sysfs_attribute_pair(self, vdir: Path, kos: dict[str, Path]) -> None:
        from lkm.kernel.virtual import VirtualKernel
        from test_exec_modules import lkm

        assert lkm(vdir, "insmod", str(kos["lkm_exec_sysfs"])).returncode == 0
        vk = VirtualKernel.open(vdir)
        assert sorted(vk.list_dir("/sys/kernel/lkm_exec")) == ["doubled", "value"]
        assert vk.read_text("/sys/kernel/lkm_exec/value") == "21\n"
        vk.write_text("/sys/kernel/lkm_exec/value", "50")
        assert vk.read_text("/sys/kernel/lkm_exec/doubled") == "100\n"
        for path, value, e in (("value", "many", errno.EINVAL), ("doubled", "1", errno.EACCES)):
            with pytest.raises(OSError) as exc:
                vk.write_text(f"/sys/kernel/lkm_exec/{path}", value)
            assert exc.value.errno == e
        assert lkm(vdir, "rmmod", "lkm_exec_sysfs").returncode == 0
        with pytest.raises(OSError) as exc:
            vk.read_text("/sys/kernel/lkm_exec/value")
        assert exc.value.errno == errno.ENOENT

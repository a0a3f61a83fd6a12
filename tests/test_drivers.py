"""Real drivers of the Debian trees through `lkm --virtual DIR modprobe`: init returns 0,
the driver appears under /sys/bus/BUS/drivers (no device: nothing probed), and goes at
`modprobe -r`; file systems in /proc/filesystems, hashes in /proc/crypto."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel.virtual import VirtualKernel

pytestmark = pytest.mark.trees

# module -> (bus, driver name) on both trees
DRIVERS = {
    "yellowfin": ("pci", "yellowfin"), "cb710": ("pci", "cb710"), "e100": ("pci", "e100"),
    "8139too": ("pci", "8139too"), "ne2k_pci": ("pci", "ne2k-pci"),
    "i2c_i801": ("pci", "i801_smbus"), "i2c_piix4": ("pci", "piix4_smbus"),
    "8250_exar": ("pci", "exar_serial"), "k10temp": ("pci", "k10temp"),
    "lm75": ("i2c", "lm75"), "lm90": ("i2c", "lm90"), "tmp102": ("i2c", "tmp102"),
    "jc42": ("i2c", "jc42"), "at24": ("i2c", "at24"), "ee1004": ("i2c", "ee1004"),
    "max1111": ("spi", "max1111"), "ads7846": ("spi", "ads7846"),
    "psmouse": ("serio", "psmouse"), "serio_raw": ("serio", "serio_raw"),
    "pcspkr": ("platform", "pcspkr"), "button": ("acpi", "button"),
}
OTHERS = ("nls_cp437", "nls_utf8", "nls_iso8859_1", "squashfs", "vfat", "minix",
          "sha512_generic", "libcrc32c", "xts", "ecb", "veth")


def lkm(vdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([LKM, "--virtual", str(vdir), *args], capture_output=True, text=True,
                       timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture(scope="module")
def loaded(tree: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    vdir = tmp_path_factory.mktemp(f"drivers-{tree.flavour}") / "vk"
    VirtualKernel.create(vdir, source=tree.kmod_root)
    failed = {}
    for m in (*DRIVERS, *OTHERS):
        p = lkm(vdir, "modprobe", m)
        if p.returncode:
            failed[m] = p.stderr.strip()
    assert not failed
    return vdir


def test_drivers_appear_under_their_bus(loaded: Path) -> None:
    vk = VirtualKernel.open(loaded)
    for m, (bus, name) in DRIVERS.items():
        assert name in vk.list_dir(f"/sys/bus/{bus}/drivers"), m
        files = vk.list_dir(f"/sys/bus/{bus}/drivers/{name}")
        assert {"bind", "unbind", "uevent"} <= set(files), m
        # the link to /sys/module/M comes from drv->owner (6.1's acpi_button_driver has none)
        assert ("module" in files) == (m != "button" or "6.12" in str(loaded)), m
        assert vk.list_dir(f"/sys/bus/{bus}/devices") == []
    assert "new_id" in vk.list_dir("/sys/bus/pci/drivers/e100")
    assert "lsmod" not in vk.list_dir("/sys/bus")
    assert {"pci", "platform", "i2c", "spi", "serio", "acpi"} <= set(vk.list_dir("/sys/bus"))


def test_filesystems_and_hashes_are_listed(loaded: Path, tree: Tree) -> None:
    vk = VirtualKernel.open(loaded)
    fs = vk.read_text("/proc/filesystems").splitlines()
    assert fs[0] == "nodev\tsysfs"
    assert {"\tsquashfs", "\tvfat", "\tminix"} <= set(fs)
    crypto = vk.read_text("/proc/crypto")
    builtin = (tree.moddir / "modules.builtin").read_text()
    if "sha512_generic" not in builtin:  # built in on 6.12
        assert "driver       : sha512-generic\nmodule       : sha512_generic\n" in crypto
    assert "driver       : crc32c-generic\n" in crypto  # libcrc32c's softdep


def test_modprobe_r_unregisters(loaded: Path) -> None:
    for m in ("e100", "lm75", "psmouse", "pcspkr", "squashfs"):
        p = lkm(loaded, "modprobe", "-r", m)
        assert p.returncode == 0, p.stderr
    vk = VirtualKernel.open(loaded)
    assert "e100" not in vk.list_dir("/sys/bus/pci/drivers")
    assert "lm75" not in vk.list_dir("/sys/bus/i2c/drivers")
    assert "psmouse" not in vk.list_dir("/sys/bus/serio/drivers")
    assert "pcspkr" not in vk.list_dir("/sys/bus/platform/drivers")
    assert "\tsquashfs" not in vk.read_text("/proc/filesystems").splitlines()
    assert "yellowfin" in vk.list_dir("/sys/bus/pci/drivers")
    # and back again
    assert lkm(loaded, "modprobe", "e100").returncode == 0
    assert "e100" in VirtualKernel.open(loaded).list_dir("/sys/bus/pci/drivers")


# bench/drivers.py over a fixed sample of 300 modules: init returning 0 (measured when the
# driver core landed; rises as the API grows, must not fall)
SAMPLE_OK = {"6.1": 90, "6.12": 69}


def test_sample_of_the_tree_does_not_regress(tree: Tree) -> None:
    import sys

    from conftest import ROOT

    p = subprocess.run([sys.executable, str(ROOT / "bench" / "drivers.py"), "--tree",
                        tree.flavour, "--sample", "300", "--top", "0"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    counts = dict(line.strip().split(": ") for line in p.stdout.splitlines()[1:])
    assert "crash" not in counts, p.stdout
    assert int(counts.get("ok", 0)) >= SAMPLE_OK[tree.flavour], p.stdout

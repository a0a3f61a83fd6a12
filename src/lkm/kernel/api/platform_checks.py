"""What the machine is, as drivers ask it: the QEMU i440FX PC the real kernels were
recorded on (arch/x86/kernel/cpu/hypervisor.c, match.c, drivers/firmware/dmi_scan.c,
drivers/acpi/bus.c, arch/x86/xen/, drivers/hv/, drivers/edac/edac_mc.c, vt.c).

- Not a guest of a hypervisor the kernel recognises under TCG: ``x86_hyper_type`` is
  X86_HYPER_NATIVE, ``xen_domain_type`` XEN_NATIVE, hv_is_hyperv_initialized() false.
- ACPI is on (``acpi_disabled`` 0); ``edac_op_state`` EDAC_OPSTATE_INVAL; the console 0.
- DMI: SeaBIOS's tables for QEMU 7.2's ``pc`` machine; dmi_check_system() calls the
  callback of each matching entry (a non-zero return stops), dmi_first_match() the first.
- x86_match_cpu() against ``boot_cpu_data`` (vendor, family, model, stepping; no
  capability bits are set, so an entry needing a feature never matches).
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kdata, kfunc

DMI = {"DMI_BIOS_VENDOR": "SeaBIOS", "DMI_BIOS_VERSION": "1.16.2-debian-1.16.2-1",
       "DMI_BIOS_DATE": "04/01/2014", "DMI_BIOS_RELEASE": "0.0",
       "DMI_SYS_VENDOR": "QEMU", "DMI_PRODUCT_NAME": "Standard PC (i440FX + PIIX, 1996)",
       "DMI_PRODUCT_VERSION": "pc-i440fx-7.2", "DMI_CHASSIS_VENDOR": "QEMU",
       "DMI_CHASSIS_TYPE": "1", "DMI_CHASSIS_VERSION": "pc-i440fx-7.2"}
X86_VENDOR_ANY = 0xFFFF
EDAC_OPSTATE_INVAL = 0xFFFFFFFF  # -1


def _int(value: int, size: int = 4) -> object:
    def init(k: Kernel, addr: int) -> None:
        k.mem.write(addr, value.to_bytes(size, "little"))
    return init


for _name, _value in (("acpi_disabled", 0), ("acpi_noirq", 0), ("acpi_pci_disabled", 0),
                      ("x86_hyper_type", 0), ("xen_domain_type", 0), ("xen_start_flags", 0),
                      ("edac_op_state", EDAC_OPSTATE_INVAL), ("fg_console", 0),
                      ("xen_pvh", 0), ("efi_enabled", 0), ("hv_root_partition", 0)):
    kdata(_name, 4)(_int(_value))  # type: ignore[arg-type]


@kfunc()
def hv_is_hyperv_initialized(k: Kernel) -> int:
    return 0


@kfunc()
def hv_is_isolation_supported(k: Kernel) -> int:
    return 0


def _dmi_fields(k: Kernel) -> dict[int, str]:
    try:
        values = k.layouts.enum("dmi_field")
    except LookupError:
        return {}
    return {values[n]: v for n, v in DMI.items() if n in values}


def _matches(k: Kernel, entry: int, fields: dict[int, str]) -> bool:
    """dmi_matches(): every used slot's string found (exact_match: equal)."""
    lay = k.layouts
    base = entry + lay.offsetof("dmi_system_id", "matches")
    size = lay.sizeof("dmi_strmatch")
    sub = lay.offsetof("dmi_strmatch", "substr")
    for i in range(4):
        m = base + i * size
        b = k.mem.read(m, 1)[0]
        slot, exact = b & 0x7F, b >> 7
        if not slot:
            continue
        want = k.text(m + sub, 79)
        have = fields.get(slot)
        if have is None or (have != want if exact else want not in have):
            return False
    return True


def _entries(k: Kernel, table: int) -> list[int]:
    """The table's entries up to the empty one (no ident and no first slot)."""
    lay = k.layouts
    size = lay.sizeof("dmi_system_id")
    ident = lay.offsetof("dmi_system_id", "ident")
    first = lay.offsetof("dmi_system_id", "matches")
    out = []
    d = table
    while k.mem.read_u64(d + ident) or k.mem.read(d + first, 1)[0] & 0x7F:
        out.append(d)
        d += size
    return out


@kfunc()
def dmi_check_system(k: Kernel, table: int) -> int:
    """drivers/firmware/dmi_scan.c: how many entries matched."""
    fields = _dmi_fields(k)
    n = 0
    cb_off = k.layouts.offsetof("dmi_system_id", "callback")
    for d in _entries(k, table):
        if _matches(k, d, fields):
            n += 1
            cb = k.mem.read_u64(d + cb_off)
            if cb and k.cpu.call(cb, [d]) & 0xFFFFFFFF:
                break
    return n


@kfunc()
def dmi_first_match(k: Kernel, table: int) -> int:
    fields = _dmi_fields(k)
    for d in _entries(k, table):
        if _matches(k, d, fields):
            return d
    return 0


@kfunc()
def dmi_get_system_info(k: Kernel, field: int) -> int:
    """A pointer to the field's string, NULL when the table lacks it."""
    text = _dmi_fields(k).get(field)
    return k.rt.kdata_scratch(text.encode() + b"\0") if text is not None else 0


@kfunc()
def dmi_match(k: Kernel, f: int, s: int) -> int:
    have = _dmi_fields(k).get(f)
    return int(have is not None and have == k.text(s))


@kfunc()
def dmi_name_in_vendors(k: Kernel, s: int) -> int:
    want = k.text(s)
    return int(any(want in _dmi_fields(k).get(k.layouts.enum("dmi_field")[f], "")
                   for f in ("DMI_SYS_VENDOR", "DMI_BOARD_VENDOR")
                   if f in k.layouts.enum("dmi_field")))


@kfunc()
def dmi_walk(k: Kernel, decode: int, private_data: int) -> int:
    """-ENXIO when no table was found; SeaBIOS has one, but no OEM entries that module
    decoders look for: a walk that calls nothing."""
    return 0


@kfunc()
def x86_match_cpu(k: Kernel, match: int) -> int:
    """arch/x86/kernel/cpu/match.c."""
    lay = k.layouts
    c = k.symbol("boot_cpu_data")
    vendor = k.mem.read(c + lay.offsetof("cpuinfo_x86", "x86_vendor"), 1)[0]
    family = k.mem.read(c + lay.offsetof("cpuinfo_x86", "x86"), 1)[0]
    model = k.mem.read(c + lay.offsetof("cpuinfo_x86", "x86_model"), 1)[0]
    stepping = k.mem.read(c + lay.offsetof("cpuinfo_x86", "x86_stepping"), 1)[0]
    size = lay.sizeof("x86_cpu_id")

    def u16(m: int, f: str) -> int:
        return int.from_bytes(k.mem.read(m + lay.offsetof("x86_cpu_id", f), 2), "little")

    m = match
    while u16(m, "vendor") | u16(m, "family") | u16(m, "model") | u16(m, "feature"):
        ok = (u16(m, "vendor") in (X86_VENDOR_ANY, vendor)
              and u16(m, "family") in (0, family) and u16(m, "model") in (0, model)
              and (not u16(m, "steppings") or u16(m, "steppings") >> stepping & 1)
              and not u16(m, "feature"))
        if ok:
            return m
        m += size
    return 0


for _ptr in ("udp_tunnel_nic_ops", "nf_ct_hook", "nf_nat_hook", "ip6_tunnel_ops"):
    kdata(_ptr, 8)(_int(0, 8))  # type: ignore[arg-type]  # function tables not installed

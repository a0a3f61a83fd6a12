"""Networking registrations a module makes at init (net/core/net_namespace.c, sock.c,
dev.c, net/socket.c, net/ipv4/protocol.c, net/core/rtnetlink.c).

- ``init_net`` is the only network namespace; register_pernet_subsys()/_device() give an
  ops with ``id`` and ``size`` its slot in ``net->gen`` (zeroed memory of ``size``), then run
  ``init(&init_net)``; a failing init undoes and returns its error.  Unregistering runs
  ``pre_exit``, ``exit`` and ``exit_batch`` (a list holding init_net) and frees the slot.
- proto_register() makes the protocol's slab cache when asked and puts it on the list
  /proc/net/protocols shows; sock_register() takes an address family ("NET: Registered
  PF_X protocol family"; -EEXIST when taken, -ENOBUFS past NPROTO).
- dev_add_pack(), register_netdevice_notifier() (no device is replayed: the loopback
  device of a real kernel is not modelled), rtnl_link_register() (-EEXIST for a kind
  taken), inet_add_protocol() (-1 when the slot is taken), rtnl_lock.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, signed, substate
from lkm.kernel.api.driver_base import init_list_head, read_ptr
from lkm.kernel.api.notifier import _own, chain_register, chain_unregister
from lkm.kernel.api.slab import slab

NPROTO = 46  # AF_MAX in 6.1
GEN_SLOTS = 512
FAMILIES = ("UNSPEC", "UNIX/PF_LOCAL", "INET", "AX25", "IPX", "APPLETALK", "NETROM",
            "BRIDGE", "ATMPVC", "X25", "INET6", "ROSE", "DECnet", "NETBEUI", "SECURITY",
            "KEY", "NETLINK/PF_ROUTE", "PACKET", "ASH", "ECONET", "ATMSVC", "RDS", "SNA",
            "IRDA", "PPPOX", "WANPIPE", "LLC", "IB", "MPLS", "CAN", "TIPC", "BLUETOOTH",
            "IUCV", "RXRPC", "ISDN", "PHONET", "IEEE802154", "CAIF", "ALG", "NFC", "VSOCK",
            "KCM", "QIPCRTR", "SMC", "XDP", "MCTP")
# families registered at boot by Debian's built-in code
BUILTIN_FAMILIES = (1, 2, 10, 16, 17)


@substate("net")
class Net:
    """Pernet ops (address -> id), protocols (address, name), families, link kinds,
    packet types, the next net_generic id."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.pernet: dict[int, int] = {}
        self.protos: list[int] = []
        self.families: dict[int, int] = {}
        self.links: dict[str, int] = {}
        self.packs: list[int] = []
        self.inet: dict[int, int] = {}
        self.next_id = 0

    def to_json(self) -> dict[str, Any]:
        return {"pernet": sorted(self.pernet.items()), "protos": self.protos,
                "families": sorted(self.families.items()), "links": self.links,
                "packs": self.packs, "inet": sorted(self.inet.items()), "id": self.next_id}

    @classmethod
    def from_json(cls, k: Kernel | None, d: dict[str, Any]) -> Net:
        s = cls(k)
        s.pernet = {int(a): int(i) for a, i in d["pernet"]}
        s.protos = list(d["protos"])
        s.families = {int(f): int(a) for f, a in d["families"]}
        s.links = dict(d["links"])
        s.packs = list(d["packs"])
        s.inet = {int(p): int(a) for p, a in d["inet"]}
        s.next_id = int(d["id"])
        return s


def net(k: Kernel) -> Net:
    return k.sub(Net)


def _min_id(k: Kernel) -> int:
    """MIN_PERNET_OPS_ID: the ptr[] slots after net_generic's header."""
    return (k.layouts.sizeof("net_generic") + 7) // 8


@kdata("init_net", lambda k: k.layouts.sizeof("net"), align=64)
def _init_net(k: Kernel, addr: int) -> None:
    lay = k.layouts
    gen = slab(k).kmalloc_large(8 * GEN_SLOTS)
    k.mem.write_u32(gen, GEN_SLOTS)  # s.len
    k.mem.write_u64(addr + lay.offsetof("net", "gen"), gen)
    with contextlib.suppress(LookupError):
        k.mem.write_u32(addr + lay.offsetof("net", "ns.count"), 1)
    for f in ("list", "exit_list"):
        init_list_head(k, addr + lay.offsetof("net", f))


@kdata("pernet_ops_rwsem", lambda k: k.layouts.sizeof("rw_semaphore"))
def _pernet_ops_rwsem(k: Kernel, addr: int) -> None:
    init_list_head(k, addr + k.layouts.offsetof("rw_semaphore", "wait_list"))


def _gen_slot(k: Kernel, id_: int) -> int:
    n = k.symbol("init_net")
    return read_ptr(k, n, "net", "gen") + 8 * id_


def _ops_exit(k: Kernel, ops: int) -> None:
    n = k.symbol("init_net")
    for f in ("pre_exit", "exit"):
        fn = read_ptr(k, ops, "pernet_operations", f)
        if fn:
            k.cpu.call(fn, [n])
    batch = read_ptr(k, ops, "pernet_operations", "exit_batch")
    if batch:
        head = slab(k).kmalloc(16, 0)
        el = n + k.layouts.offsetof("net", "exit_list")
        k.mem.write_u64(head, el)
        k.mem.write_u64(head + 8, el)
        k.mem.write_u64(el, head)
        k.mem.write_u64(el + 8, head)
        k.cpu.call(batch, [head])
        init_list_head(k, el)
        slab(k).kfree(head)


def _free_slot(k: Kernel, ops: int) -> None:
    idp = read_ptr(k, ops, "pernet_operations", "id")
    size = read_ptr(k, ops, "pernet_operations", "size")
    if idp and size:
        slot = _gen_slot(k, k.mem.read_u32(idp))
        slab(k).kfree(k.mem.read_u64(slot))
        k.mem.write_u64(slot, 0)


@kfunc("register_pernet_device")
def register_pernet_subsys(k: Kernel, ops: int) -> int:
    """net/core/net_namespace.c (register_pernet_operations + ops_init for init_net)."""
    s = net(k)
    idp = read_ptr(k, ops, "pernet_operations", "id")
    size = read_ptr(k, ops, "pernet_operations", "size")
    if idp:
        id_ = max(_min_id(k), s.next_id)
        s.next_id = id_ + 1
        k.mem.write_u32(idp, id_)
        if size:
            k.mem.write_u64(_gen_slot(k, id_), slab(k).kmalloc(size, 0))
    init = read_ptr(k, ops, "pernet_operations", "init")
    if init:
        rv = signed(k.cpu.call(init, [k.symbol("init_net")]), 32)
        if rv:
            _free_slot(k, ops)
            return err(-rv)
    s.pernet[ops] = k.mem.read_u32(idp) if idp else 0
    return 0


@kfunc("unregister_pernet_device")
def unregister_pernet_subsys(k: Kernel, ops: int) -> None:
    if net(k).pernet.pop(ops, None) is None:
        return
    _ops_exit(k, ops)
    _free_slot(k, ops)


@kfunc()
def proto_register(k: Kernel, prot: int, alloc_slab: int) -> int:
    """net/core/sock.c: the slab cache named as the protocol (its obj_size)."""
    from lkm.kernel.api.slab import kmem_cache_create

    if alloc_slab & 0xFFFFFFFF:
        name = prot + k.layouts.offsetof("proto", "name")  # char name[32]
        size = k.mem.read_u32(prot + k.layouts.offsetof("proto", "obj_size"))
        cache = kmem_cache_create(k, name, size, 0, 0, 0)
        k.mem.write_u64(prot + k.layouts.offsetof("proto", "slab"), cache)
    net(k).protos.append(prot)
    return 0


@kfunc()
def proto_unregister(k: Kernel, prot: int) -> None:
    from lkm.kernel.api.slab import kmem_cache_destroy

    s = net(k)
    if prot in s.protos:
        s.protos.remove(prot)
    cache = read_ptr(k, prot, "proto", "slab")
    if cache:
        kmem_cache_destroy(k, cache)
        k.mem.write_u64(prot + k.layouts.offsetof("proto", "slab"), 0)


def proto_names(k: Kernel) -> list[str]:
    return [k.text(p + k.layouts.offsetof("proto", "name"), 32) for p in net(k).protos]


@kfunc()
def sock_register(k: Kernel, ops: int) -> int:
    """net/socket.c."""
    fam = k.mem.read_u32(ops + k.layouts.offsetof("net_proto_family", "family"))
    if fam >= NPROTO:
        k.log.err(f"protocol {fam} >= NPROTO({NPROTO})")
        return err(errno.ENOBUFS)
    s = net(k)
    if fam in s.families or fam in BUILTIN_FAMILIES:
        return err(errno.EEXIST)
    s.families[fam] = ops
    k.log.info(f"NET: Registered PF_{FAMILIES[fam]} protocol family")
    return 0


@kfunc()
def sock_unregister(k: Kernel, family: int) -> None:
    net(k).families.pop(family, None)
    k.log.info(f"NET: Unregistered PF_{FAMILIES[family]} protocol family")


@kfunc()
def dev_add_pack(k: Kernel, pt: int) -> None:
    net(k).packs.append(pt)


@kfunc()
def dev_remove_pack(k: Kernel, pt: int) -> None:
    s = net(k)
    if pt in s.packs:
        s.packs.remove(pt)


@kfunc()
def register_netdevice_notifier(k: Kernel, nb: int) -> int:
    """net/core/dev.c (the existing devices' REGISTER/UP events are not replayed)."""
    return chain_register(k, _own(k, "netdev_chain"), nb)


@kfunc()
def unregister_netdevice_notifier(k: Kernel, nb: int) -> int:
    return chain_unregister(k, _own(k, "netdev_chain"), nb)


@kfunc()
def register_netdevice_notifier_net(k: Kernel, n: int, nb: int) -> int:
    return register_netdevice_notifier(k, nb)


@kfunc()
def unregister_netdevice_notifier_net(k: Kernel, n: int, nb: int) -> int:
    return unregister_netdevice_notifier(k, nb)


@kfunc("__rtnl_link_register")
def rtnl_link_register(k: Kernel, ops: int) -> int:
    """net/core/rtnetlink.c: a link kind once."""
    kind = k.text(read_ptr(k, ops, "rtnl_link_ops", "kind"))
    s = net(k)
    if kind in s.links:
        return err(errno.EEXIST)
    s.links[kind] = ops
    return 0


@kfunc("__rtnl_link_unregister")
def rtnl_link_unregister(k: Kernel, ops: int) -> None:
    kind = k.text(read_ptr(k, ops, "rtnl_link_ops", "kind"))
    net(k).links.pop(kind, None)


@kfunc("rtnl_unlock")
def rtnl_lock(k: Kernel) -> None:
    return None


@kfunc()
def rtnl_is_locked(k: Kernel) -> int:
    return 0


@kfunc()
def inet_add_protocol(k: Kernel, prot: int, protocol: int) -> int:
    """net/ipv4/protocol.c: cmpxchg into an empty slot, else -1."""
    s = net(k)
    protocol &= 0xFF
    if protocol in s.inet:
        return err(1)
    s.inet[protocol] = prot
    return 0


@kfunc()
def inet_del_protocol(k: Kernel, prot: int, protocol: int) -> int:
    s = net(k)
    if s.inet.get(protocol & 0xFF) != prot:
        return err(1)
    del s.inet[protocol & 0xFF]
    return 0

"""Traffic-control and congestion-control registrations by name (net/sched/sch_api.c,
act_api.c, cls_api.c, ematch.c, net/ipv4/tcp_cong.c, net/ethtool/common.c).

Each list refuses a name (or kind, or ematch kind number) already present with -EEXIST;
the unregister calls remove.  ethtool_set_ethtool_phy_ops() stores phylib's ops."""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, substate


@substate("net_sched")
class NetSched:
    """list name -> {name: struct address}."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.lists: dict[str, dict[str, int]] = {}

    def to_json(self) -> dict[str, Any]:
        return self.lists

    @classmethod
    def from_json(cls, k: Kernel | None, d: dict[str, Any]) -> NetSched:
        s = cls(k)
        s.lists = {n: dict(v) for n, v in d.items()}
        return s


def _name(k: Kernel, addr: int, struct_: str, field: str, inline: bool) -> str:
    at = addr + k.layouts.offsetof(struct_, field)
    if inline:
        return k.text(at, 32)
    return k.text(k.mem.read_u64(at), 64)


def _register(k: Kernel, lst: str, addr: int, name: str) -> int:
    d = k.sub(NetSched).lists.setdefault(lst, {})
    if name in d:
        return err(errno.EEXIST)
    d[name] = addr
    return 0


def _unregister(k: Kernel, lst: str, addr: int) -> int:
    d = k.sub(NetSched).lists.setdefault(lst, {})
    for n, a in list(d.items()):
        if a == addr:
            del d[n]
            return 0
    return err(errno.ENOENT)


def _pair(fn_reg: str, fn_unreg: str, lst: str, struct_: str, field: str,
          inline: bool) -> None:
    def reg(k: Kernel, ops: int) -> int:
        return _register(k, lst, ops, _name(k, ops, struct_, field, inline))

    def unreg(k: Kernel, ops: int) -> int:
        return _unregister(k, lst, ops)

    reg.__name__, unreg.__name__ = fn_reg, fn_unreg
    kfunc()(reg)
    kfunc()(unreg)


_pair("register_qdisc", "unregister_qdisc", "qdisc", "Qdisc_ops", "id", True)
_pair("register_tcf_proto_ops", "unregister_tcf_proto_ops", "cls", "tcf_proto_ops", "kind",
      True)
_pair("tcp_register_congestion_control", "tcp_unregister_congestion_control", "tcp_cong",
      "tcp_congestion_ops", "name", True)


@kfunc()
def tcf_register_action(k: Kernel, act: int, ops: int) -> int:
    """net/sched/act_api.c: by kind (the pernet ops are registered first)."""
    from lkm.kernel.api.net import register_pernet_subsys

    rv = register_pernet_subsys(k, ops)
    if rv:
        return rv
    return _register(k, "act", act, _name(k, act, "tc_action_ops", "kind", True))


@kfunc()
def tcf_unregister_action(k: Kernel, act: int, ops: int) -> int:
    from lkm.kernel.api.net import unregister_pernet_subsys

    unregister_pernet_subsys(k, ops)
    return _unregister(k, "act", act)


@kfunc()
def tcf_em_register(k: Kernel, ops: int) -> int:
    kind = k.mem.read_u32(ops + k.layouts.offsetof("tcf_ematch_ops", "kind"))
    return _register(k, "ematch", ops, str(kind))


@kfunc()
def tcf_em_unregister(k: Kernel, ops: int) -> None:
    _unregister(k, "ematch", ops)


@kdata("ethtool_phy_ops", 8)
def _ethtool_phy_ops(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, 0)


@kfunc()
def ethtool_set_ethtool_phy_ops(k: Kernel, ops: int) -> None:
    """net/ethtool/common.c."""
    k.mem.write_u64(k.symbol("ethtool_phy_ops"), ops)

"""The kernel the tools act on: the virtual kernel LKM_VIRTUAL names, else this one."""

from __future__ import annotations

import os

from lkm.kernel.backend import KernelBackend


def get_backend() -> KernelBackend:
    """The virtual kernel named by LKM_VIRTUAL, else the running kernel."""
    vdir = os.environ.get("LKM_VIRTUAL")
    if vdir:
        from lkm.kernel.virtual import VirtualKernel

        return VirtualKernel.open(vdir)
    from lkm.kernel.live import LiveKernel

    return LiveKernel()

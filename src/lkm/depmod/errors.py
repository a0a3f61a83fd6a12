"""depmod's errors: kmod's message text and the priority it is printed at."""

from __future__ import annotations

from lkm.errors import LkmError
from lkm.logprio import LOG_CRIT, LOG_ERR


class DepmodError(LkmError):
    """depmod cannot go on; the message is kmod's text (printed at ``priority``)."""

    def __init__(self, message: str, priority: int = LOG_CRIT) -> None:
        super().__init__(message)
        self.priority = priority


class DependencyCycleError(DepmodError):
    """Modules depend on each other in a cycle (kmod reports them and writes nothing).

    ``cycles`` lists each cycle reported (module names, the first again at the end);
    ``count`` is the number of modules in cycles.
    """

    def __init__(self, cycles: list[list[str]], count: int) -> None:
        super().__init__(f"Found {count} modules in dependency cycles!\n", LOG_ERR)
        self.cycles = cycles
        self.count = count

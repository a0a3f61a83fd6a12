"""depmod: scan a module tree, resolve symbol dependencies, write kmod's index files.

The behaviour and every output byte follow Debian's kmod 30 ``depmod``:

* the tree is walked in readdir order; of two files giving the same module name
  the one preferred by depmod.d (``override``, then ``search`` order with
  ``built-in`` and ``external`` slots) wins, else the first met (:mod:`.search`);
* module order (``idx``, the priority in the indexes) is modules.order first,
  then libkmod's hash-table order: (SuperFastHash(name) & 511, strcmp)
  (:mod:`.order`, :mod:`.hash`);
* exports are the ``__crc_`` symbols, else ``__ksymtab_strings``; undefined symbols
  then unmatched ``__versions`` entries give the dependencies (:mod:`.read`, shared
  out over processes by :mod:`.parallel`);
* a later module in that order takes over an export; Kahn's sort (a LIFO of modules
  nobody uses) numbers the modules, and what it leaves is in a cycle (:mod:`.resolve`);
* each modules.dep line lists the transitive dependencies by that number
  (:mod:`.output`: every file's content);
* files are written as ``<name>.<pid>.<usec>.<sec>`` and renamed in place
  (:mod:`.write`); ``-A`` checks modification times first (:mod:`.uptodate`).

depmod.d is read by :mod:`lkm.config.depmod`.  Messages carry kmod's text and are
handed to a ``log(priority, text)`` callback (lkm.logprio's syslog priorities, as
kmod's tools use them); ``-v`` lines go to their own callback.

The entry point is :func:`run`; :class:`Depmod` runs the steps one by one.
"""

from lkm.config.depmod import DepmodConfig, LogFn
from lkm.config.lines import fgets_lines, wrapped_lines
from lkm.depmod.errors import DependencyCycleError, DepmodError
from lkm.depmod.hash import hash_order_key, superfast_hash
from lkm.depmod.main import Depmod, default_kversion, is_version_number, load_config, run
from lkm.depmod.output import OUTPUTS, TEXT_OUTPUTS, alias_normalize
from lkm.depmod.read import ModuleData, read_module_data
from lkm.depmod.search import KMOD_EXTENSIONS
from lkm.depmod.state import DepmodModule
from lkm.depmod.uptodate import depfile_up_to_date
from lkm.index import Layout

__all__ = [
    "KMOD_EXTENSIONS",
    "OUTPUTS",
    "TEXT_OUTPUTS",
    "DependencyCycleError",
    "Depmod",
    "DepmodConfig",
    "DepmodError",
    "DepmodModule",
    "Layout",
    "LogFn",
    "ModuleData",
    "alias_normalize",
    "default_kversion",
    "depfile_up_to_date",
    "fgets_lines",
    "hash_order_key",
    "is_version_number",
    "load_config",
    "read_module_data",
    "run",
    "superfast_hash",
    "wrapped_lines",
]

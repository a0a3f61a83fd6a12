"""``lkm audit``: what a security reviewer asks of module files and of a running kernel.

For module files (:func:`audit_files`, :class:`Auditor`): what loading each would do to a
given kernel (lkm check's verdict, the taints and why, the signature against the kernel's
keys) and indicators of kernel tampering in its symbols (symbols.py), machine code
(code.py) and references to its own struct module (thismodule.py).  For a running or
virtual kernel (live.py): its module-loading posture and a cross-view of the modules it
lists.  Findings are catalogued once, in findings.py.  capstone is imported only when a
module's code is disassembled.
"""

from lkm.audit.findings import (
    CATALOG,
    Evidence,
    Finding,
    LoadVerdict,
    ModuleReport,
    Severity,
    SignatureState,
)
from lkm.audit.report import Auditor, audit_files

__all__ = ["CATALOG", "Auditor", "Evidence", "Finding", "LoadVerdict", "ModuleReport",
           "Severity", "SignatureState", "audit_files"]

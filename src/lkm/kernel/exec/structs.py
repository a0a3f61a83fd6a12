"""The struct layouts module code runs against, answered from a cache before the BTF.

Every process that runs module code asks the same few dozen questions of the kernel's
BTF (offsetof(task_struct, pid), sizeof(struct kernel_param), the pv_ops slots...); the
answers are facts of the profile's kernel, kept next to its BTF cache
(``<profile key>.exec-layouts.json``), so that a process whose questions were all asked
before never reads the BTF at all (it takes ~45 ms to open and index).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from lkm.errors import LkmError


class LayoutLookupError(LkmError, LookupError):
    """The kernel's BTF has no such type or member."""


class FieldInfo(NamedTuple):
    """The parts of a BTF field that module code needs: bit offset, bitfield size, size."""

    bit_offset: int
    bitfield_size: int
    size: int

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


_MEMOS: dict[str, dict[str, Any]] = {}  # per process: the answers of each profile


class StructLayouts:
    """offsetof/sizeof/field of one profile's kernel, memoised and persisted."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self._btf: Any = None
        self._path: Path | None = None
        try:
            self._path = profile.cache_path(".exec-layouts.json")
        except (AttributeError, OSError):
            self._path = None
        self._dirty = False
        key = str(self._path)
        memo = _MEMOS.get(key)
        if memo is None:
            memo = {}
            if self._path is not None:
                with contextlib.suppress(OSError, ValueError):
                    memo = dict(json.loads(self._path.read_text()))
            _MEMOS[key] = memo
        self._memo = memo

    @property
    def known(self) -> bool:
        """The BTF was read for this profile before (so it exists)."""
        return bool(self._memo.get("ok"))

    def btf(self) -> Any:
        if self._btf is None:
            from lkm.kernel.layouts import layouts

            self._btf = layouts(self.profile)
            if not self._memo.get("ok"):
                self._memo["ok"] = True
                self._dirty = True
        return self._btf

    def _ask(self, key: str, compute: Any) -> Any:
        if key in self._memo:
            got = self._memo[key]
        else:
            from lkm.btf import BtfLookupError

            b = self.btf()
            try:
                got = compute(b)
            except BtfLookupError as e:
                got = {"error": str(e)}
            self._memo[key] = got
            self._dirty = True
        if isinstance(got, dict) and "error" in got:
            raise LayoutLookupError(got["error"])
        return got

    def offsetof(self, struct_: int | str, path: str) -> int:
        return int(self._ask(f"o|{struct_}|{path}", lambda b: b.offsetof(struct_, path)))

    def sizeof(self, t: int | str) -> int:
        return int(self._ask(f"s|{t}", lambda b: b.sizeof(t)))

    def field(self, struct_: int | str, path: str) -> FieldInfo:
        def compute(b: Any) -> list[int]:
            f = b.field(struct_, path)
            return [f.bit_offset, f.bitfield_size, f.size]
        v = self._ask(f"f|{struct_}|{path}", compute)
        return FieldInfo(int(v[0]), int(v[1]), int(v[2]))

    def enum(self, name: str) -> dict[str, int]:
        return dict(self._ask(f"e|{name}", lambda b: b.enum_values(name)))

    def nested_members(self, struct_: str) -> list[tuple[str, int]]:
        """(``outer.inner``, byte offset) of the members of each member of a struct (the
        shape of struct paravirt_patch_template)."""
        def compute(b: Any) -> list[list[Any]]:
            out = []
            for group in b.members(b.resolve(struct_)):
                for op in b.members(b.resolve(group.type)):
                    out.append([f"{group.name}.{op.name}",
                                (group.bit_offset + op.bit_offset) // 8])
            return out
        return [(str(p), int(o)) for p, o in self._ask(f"n|{struct_}", compute)]

    def save(self) -> None:
        """Write the answers (atomically) if any were new."""
        if not self._dirty or self._path is None:
            return
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._memo, separators=(",", ":")))
            os.replace(tmp, self._path)
        with contextlib.suppress(OSError):
            tmp.unlink()
        self._dirty = False

"""BTF, the BPF Type Format: a kernel's types, as its vmlinux's ``.BTF`` section records them.

The format is include/uapi/linux/btf.h and Documentation/bpf/btf.rst: a ``struct btf_header``
(magic 0xeB9F, read in either byte order, which gives the data's), a type section of
``struct btf_type`` records each followed by its kind's extra data, and a string section.
Type ids count from 1 in record order (0 is void).

Reading is lazy: :class:`Btf` walks the type section once to find where each record starts
(about 20 ms for the ~100,800 types of Debian's 6.1 vmlinux) and decodes a record, its members
or its name only when asked; the index by name offset is built on the first lookup by name
(another 20 ms), names themselves are found by searching the string section.  Every
offset, count and type id read from the data is checked, chains of typedefs and modifiers are
bounded, and hostile data raises :class:`BtfError`, never another exception or a hang.

The queries are the C ones: :meth:`Btf.sizeof`, :meth:`Btf.offsetof` through nested members
(``"file.f_path.dentry"``, ``"pid_links[1]"``) and anonymous struct/union members,
:meth:`Btf.field` (the member's type, size and bit position), :meth:`Btf.alignof` and enum
values by name.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import NamedTuple

from lkm.errors import FormatError, LkmError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_MAX_TYPE = 0xFFFFF  # include/uapi/linux/btf.h: the largest type id

(UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(20)

KIND_NAMES = ("void", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
              "volatile", "const", "restrict", "func", "func_proto", "var", "datasec", "float",
              "decl_tag", "type_tag", "enum64")

BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL = 1, 2, 4

MAX_CHAIN = 64
"""Most links followed through typedefs, modifiers, arrays or nested anonymous members."""

# u32 words a record takes: 3 (struct btf_type) + fixed + per_member * vlen
_WORDS = {INT: (1, 0), PTR: (0, 0), ARRAY: (3, 0), STRUCT: (0, 3), UNION: (0, 3), ENUM: (0, 2),
          FWD: (0, 0), TYPEDEF: (0, 0), VOLATILE: (0, 0), CONST: (0, 0), RESTRICT: (0, 0),
          FUNC: (0, 0), FUNC_PROTO: (0, 2), VAR: (1, 0), DATASEC: (0, 3), FLOAT: (0, 0),
          DECL_TAG: (1, 0), TYPE_TAG: (0, 0), ENUM64: (0, 3)}
_FIXED: list[int | None] = [None] * 32
_PER = [0] * 32
for _k, (_f, _p) in _WORDS.items():
    _FIXED[_k], _PER[_k] = 3 + _f, _p

_QUALIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
_SIZED = frozenset({INT, ENUM, ENUM64, STRUCT, UNION, FLOAT, DATASEC})
_COMPOSITE = (STRUCT, UNION)
_HEADER = {"<": struct.Struct("<HBBIIIII"), ">": struct.Struct(">HBBIIIII")}
_PREFIX = {"struct": STRUCT, "union": UNION, "enum": ENUM}
# which kind a bare name means first (sizeof("file") is struct file)
_PREFERENCE = (STRUCT, UNION, ENUM, ENUM64, TYPEDEF, INT, FLOAT, DATASEC, VAR, FUNC, FUNC_PROTO,
               PTR, ARRAY, VOLATILE, CONST, RESTRICT, TYPE_TAG, DECL_TAG, FWD)

assert array("I").itemsize == 4


class BtfError(FormatError):
    """The BTF data is malformed (truncated, bad offsets or ids, loops in type chains)."""


class BtfLookupError(LkmError):
    """No such type or member, or a query that does not apply to the type (sizeof a function)."""


class BtfType(NamedTuple):
    """One ``struct btf_type``: ``size_or_type`` is a size or a type id, as the kind says."""

    id: int
    kind: int
    name: str
    vlen: int
    kind_flag: bool
    size_or_type: int

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


class BtfMember(NamedTuple):
    """A ``struct btf_member``; ``bitfield_size`` is 0 for a member that is no bitfield."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int


class Field(NamedTuple):
    """A member reached by a path from the start of a struct or union.

    ``type`` is the member's declared type (typedefs kept), ``kind`` the kind it resolves to
    (``"ptr"``, ``"array"``, ``"int"``, ``"struct"``...), ``size`` its sizeof.
    """

    path: str
    type: int
    kind: str
    bit_offset: int
    bitfield_size: int
    size: int

    @property
    def offset(self) -> int:
        """The byte offset (of the byte holding the first bit, for a bitfield)."""
        return self.bit_offset // 8


def _split_path(path: str) -> list[tuple[str, list[int]]]:
    """``"a.b[2][3].c"`` -> ``[("a", []), ("b", [2, 3]), ("c", [])]``."""
    out: list[tuple[str, list[int]]] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        idx: list[int] = []
        if rest:
            for piece in rest.split("["):
                num = piece.removesuffix("]")
                if not piece.endswith("]") or not num.isdigit():
                    raise BtfLookupError(f"bad member path '{path}'")
                idx.append(int(num))
        if not name.isidentifier():
            raise BtfLookupError(f"bad member path '{path}'")
        out.append((name, idx))
    return out


class Btf:
    """The types of one BTF blob (raw ``.BTF`` section contents).

    ``pointer_size`` is the target's (BTF does not record it): given, or that of ``long``.
    """

    def __init__(self, data: bytes | bytearray | memoryview,
                 pointer_size: int | None = None) -> None:
        mv = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        if len(mv) < 24:
            raise BtfError(f"BTF header truncated ({len(mv)} bytes, need 24)")
        magic = int.from_bytes(mv[:2], "little")
        if magic == BTF_MAGIC:
            e = "<"
        elif magic == 0x9FEB:
            e = ">"
        else:
            raise BtfError(f"not BTF: bad magic {magic:#06x}")
        self.little_endian = e == "<"
        _, version, self.flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER[e].unpack_from(mv, 0))
        if version != BTF_VERSION:
            raise BtfError(f"unsupported BTF version {version}")
        if hdr_len < 24 or hdr_len > len(mv):
            raise BtfError(f"bad BTF header length {hdr_len} ({len(mv)} bytes of data)")
        body = len(mv) - hdr_len
        for what, off, size in (("type", type_off, type_len), ("string", str_off, str_len)):
            if off > body or size > body - off:
                raise BtfError(f"BTF {what} section (offset {off:#x}, length {size:#x}) is past "
                               f"the end of the data ({body:#x} bytes after the header)")
        if type_off % 4 or type_len % 4:
            raise BtfError(f"BTF type section misaligned (offset {type_off:#x}, "
                           f"length {type_len:#x})")
        if type_len and str_off + str_len > type_off and type_off + type_len > str_off:
            raise BtfError("BTF type and string sections overlap")
        strs = bytes(mv[hdr_len + str_off:hdr_len + str_off + str_len])
        if not strs or strs[0] != 0 or strs[-1] != 0:
            raise BtfError("BTF string section does not start and end with a NUL")
        self._strs = strs
        words = array("I")
        words.frombytes(mv[hdr_len + type_off:hdr_len + type_off + type_len])
        if self.little_endian != (sys.byteorder == "little"):
            words.byteswap()
        self._w = words
        self._offs = self._walk(words)
        self._ptr = pointer_size
        self._by_name: dict[int, int | list[int]] | None = None
        self._enumerators: dict[str, int] | None = None
        self._members: dict[int, list[BtfMember]] = {}
        self._align: dict[int, int] = {}

    @staticmethod
    def _walk(w: array[int]) -> array[int]:
        """Where each type's record starts (in words); entry 0 stands for void."""
        offs = array("I", [0])
        add = offs.append
        fixed, per = _FIXED, _PER
        i, n = 0, len(w)
        try:
            while i < n:
                info = w[i + 1]
                k = info >> 24 & 0x1F
                add(i)
                i += fixed[k] + per[k] * (info & 0xFFFF)  # type: ignore[operator]
        except IndexError:
            raise BtfError(f"BTF type {len(offs)} truncated at word {i}") from None
        except TypeError:
            k = w[i + 1] >> 24 & 0x1F
            raise BtfError(f"BTF type {len(offs) - 1}: unknown kind {k}") from None
        if i != n:
            raise BtfError(f"BTF type {len(offs) - 1} runs past the end of the type section")
        if len(offs) - 1 > BTF_MAX_TYPE:
            raise BtfError(f"too many BTF types ({len(offs) - 1})")
        return offs

    @classmethod
    def from_elf(cls, data: bytes | bytearray | memoryview) -> Btf:
        """The types of an ELF file's ``.BTF`` section (a vmlinux); BtfError if it has none."""
        from lkm.elf import ElfFile

        elf = ElfFile(data)
        sec = elf.section_bytes(".BTF")
        if sec is None:
            raise BtfError("no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF)")
        return cls(bytes(sec), pointer_size=elf.pointer_size)

    # -- records --------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of type ids, void included."""
        return len(self._offs)

    def _string(self, off: int) -> str:
        strs = self._strs
        if off >= len(strs):
            raise BtfError(f"BTF name offset {off:#x} is past the string section "
                           f"({len(strs):#x} bytes)")
        return strs[off:strs.index(b"\0", off)].decode("utf-8", "surrogateescape")

    def _check(self, tid: int) -> int:
        if not 0 <= tid < len(self._offs):
            raise BtfError(f"BTF type id {tid} out of range ({len(self._offs) - 1} types)")
        return tid

    def type(self, tid: int) -> BtfType:
        """The record of type ``tid`` (0: void)."""
        if self._check(tid) == 0:
            return BtfType(0, UNKN, "void", 0, False, 0)
        w, o = self._w, self._offs[tid]
        info = w[o + 1]
        return BtfType(tid, info >> 24 & 0x1F, self._string(w[o]), info & 0xFFFF,
                       bool(info >> 31), w[o + 2])

    def kind(self, tid: int) -> int:
        return 0 if self._check(tid) == 0 else self._w[self._offs[tid] + 1] >> 24 & 0x1F

    def name(self, tid: int) -> str:
        return "" if self._check(tid) == 0 else self._string(self._w[self._offs[tid]])

    def _ref(self, tid: int) -> int:
        """The type id a PTR, TYPEDEF, modifier, FUNC, VAR or tag refers to (checked)."""
        return self._check(self._w[self._offs[tid] + 2])

    def _extra(self, tid: int, kind: int) -> int:
        """Where the extra data of ``tid`` starts, after checking it has ``kind``."""
        if self.kind(tid) != kind:
            raise BtfLookupError(f"type {tid} ({self.type_name(tid)}) is not {KIND_NAMES[kind]}")
        return self._offs[tid] + 3

    def members(self, tid: int) -> list[BtfMember]:
        """The members of struct or union ``tid`` (kind_flag: bitfield size in the offset)."""
        got = self._members.get(tid)
        if got is not None:
            return got
        t = self.type(tid)
        if t.kind not in _COMPOSITE:
            raise BtfLookupError(f"type {tid} ({self.type_name(tid)}) is not a struct or union")
        w, base, out = self._w, self._offs[tid] + 3, []
        for j in range(base, base + 3 * t.vlen, 3):
            off = w[j + 2]
            bits, off = (off >> 24, off & 0xFFFFFF) if t.kind_flag else (0, off)
            out.append(BtfMember(self._string(w[j]), self._check(w[j + 1]), off, bits))
        self._members[tid] = out
        return out

    def array(self, tid: int) -> tuple[int, int, int]:
        """``(element type, index type, nelems)`` of array ``tid``."""
        o = self._extra(tid, ARRAY)
        w = self._w
        return self._check(w[o]), self._check(w[o + 1]), w[o + 2]

    def int_info(self, tid: int) -> tuple[int, int, int]:
        """``(encoding, bit offset, bits)`` of int ``tid`` (BTF_INT_SIGNED/CHAR/BOOL)."""
        v = self._w[self._extra(tid, INT)]
        return v >> 24 & 0x0F, v >> 16 & 0xFF, v & 0xFF

    def params(self, tid: int) -> list[tuple[str, int]]:
        """``(name, type)`` of each parameter of func_proto ``tid`` (type 0 last: varargs)."""
        o, w = self._extra(tid, FUNC_PROTO), self._w
        return [(self._string(w[j]), self._check(w[j + 1]))
                for j in range(o, o + 2 * self.type(tid).vlen, 2)]

    def var_secinfo(self, tid: int) -> list[tuple[int, int, int]]:
        """``(var type, offset, size)`` of each variable of datasec ``tid``."""
        o, w = self._extra(tid, DATASEC), self._w
        return [(self._check(w[j]), w[j + 1], w[j + 2])
                for j in range(o, o + 3 * self.type(tid).vlen, 3)]

    def linkage(self, tid: int) -> int:
        """The linkage of a func (its vlen) or var (``struct btf_var``)."""
        if self.kind(tid) == FUNC:
            return self.type(tid).vlen
        return self._w[self._extra(tid, VAR)]

    def decl_tag(self, tid: int) -> tuple[int, int]:
        """``(tagged type, component_idx)`` of decl_tag ``tid`` (-1: the type itself)."""
        v = self._w[self._extra(tid, DECL_TAG)]
        return self._ref(tid), v - (1 << 32) if v >> 31 else v

    def enum_values(self, t: int | str) -> dict[str, int]:
        """The enumerators of an enum or enum64 (by id or name: ``"module_state"``)."""
        tid = self.resolve(self.find(t, ENUM) if isinstance(t, str) else t)
        bt = self.type(tid)
        w, o = self._w, self._offs[tid] + 3
        out: dict[str, int] = {}
        if bt.kind == ENUM:
            for j in range(o, o + 2 * bt.vlen, 2):
                v = w[j + 1]
                out[self._string(w[j])] = v - (1 << 32) if bt.kind_flag and v >> 31 else v
        elif bt.kind == ENUM64:
            for j in range(o, o + 3 * bt.vlen, 3):
                v = w[j + 1] | w[j + 2] << 32
                out[self._string(w[j])] = v - (1 << 64) if bt.kind_flag and v >> 63 else v
        else:
            raise BtfLookupError(f"type {tid} ({self.type_name(tid)}) is not an enum")
        return out

    def enumerator(self, name: str) -> int:
        """The value of enumerator ``name`` (``"MODULE_STATE_LIVE"``), whichever enum has it."""
        if self._enumerators is None:
            found: dict[str, int] = {}
            for tid in self.ids_of_kind(ENUM, ENUM64):
                for k, v in self.enum_values(tid).items():
                    found.setdefault(k, v)
            self._enumerators = found
        try:
            return self._enumerators[name]
        except KeyError:
            raise BtfLookupError(f"no enumerator {name}") from None

    def ids_of_kind(self, *kinds: int) -> list[int]:
        """Every type id of one of ``kinds``, in order."""
        w, want = self._w, set(kinds)
        return [tid for tid, o in enumerate(self._offs) if tid and w[o + 1] >> 24 & 0x1F in want]

    # -- names ----------------------------------------------------------------------------

    def _name_index(self) -> dict[int, int | list[int]]:
        idx = self._by_name
        if idx is None:
            idx = {}
            w = self._w
            for tid, o in enumerate(self._offs):
                if not tid:
                    continue
                no = w[o]
                got = idx.get(no)
                if got is None:
                    idx[no] = tid
                elif isinstance(got, int):
                    idx[no] = [got, tid]
                else:
                    got.append(tid)
            self._by_name = idx
        return idx

    def find_all(self, name: str) -> list[int]:
        """Every type id called ``name`` (of any kind), in order."""
        idx = self._name_index()
        key = name.encode("utf-8", "surrogateescape") + b"\0"
        if len(key) == 1:
            return []
        out: list[int] = []
        strs, pos = self._strs, self._strs.find(key, 1)
        while pos >= 0:  # each place the string (or a string ending in it) is stored
            got = idx.get(pos)
            if got is not None:
                out += [got] if isinstance(got, int) else got
            pos = strs.find(key, pos + 1)
        return sorted(out)

    def find(self, name: int | str, kind: int | None = None) -> int:
        """The type id of ``name``: ``"task_struct"``, ``"struct file"``, ``"enum module_state"``.

        A bare name means, of the types so called, the first struct, else union, enum,
        typedef, int...; forward declarations come last.  An int is returned as it is.
        """
        if isinstance(name, int):
            return self._check(name)
        head, _, rest = name.strip().partition(" ")
        if rest and head in _PREFIX:
            kind, name = _PREFIX[head], rest.strip()
        ids = self.find_all(name)
        if kind is not None:
            # an enum of 64-bit values is ENUM64; "struct x" may name only a forward declaration
            ok = {kind, ENUM64} if kind == ENUM else {kind}
            ids = [i for i in ids if self.kind(i) in ok] or [i for i in ids if self.kind(i) == FWD]
        if not ids:
            raise BtfLookupError(f"no type {name}" if kind is None
                                 else f"no {KIND_NAMES[kind]} {name}")
        return min(ids, key=lambda i: (_PREFERENCE.index(self.kind(i)), i))

    # -- layouts --------------------------------------------------------------------------

    @property
    def pointer_size(self) -> int:
        if self._ptr is None:
            sizes = [self._w[self._offs[i] + 2] for i in self.find_all("long int")
                     if self.kind(i) == INT]
            self._ptr = sizes[0] if sizes and sizes[0] in (4, 8) else 8
        return self._ptr

    def resolve(self, t: int | str) -> int:
        """The type under typedefs, const, volatile, restrict and type tags."""
        tid = self.find(t)
        for _ in range(MAX_CHAIN):
            if self.kind(tid) not in _QUALIFIERS:
                return tid
            tid = self._ref(tid)
        raise BtfError(f"BTF type chain from {t} is a loop or longer than {MAX_CHAIN}")

    def sizeof(self, t: int | str) -> int:
        """sizeof the type (by id or name); BtfLookupError for void, functions, forwards."""
        tid, mult = self.find(t), 1
        for _ in range(MAX_CHAIN):
            k = self.kind(tid)
            if k in _SIZED:
                return mult * self._w[self._offs[tid] + 2]
            if k == PTR:
                return mult * self.pointer_size
            if k in _QUALIFIERS or k == VAR:
                tid = self._ref(tid)
            elif k == ARRAY:
                elem, _, n = self.array(tid)
                tid, mult = elem, mult * n
            else:
                raise BtfLookupError(f"sizeof {self.type_name(tid)}: incomplete type "
                                     f"({KIND_NAMES[k]})")
        raise BtfError(f"BTF type chain from {t} is a loop or longer than {MAX_CHAIN}")

    def alignof(self, t: int | str) -> int:
        """The alignment, inferred as libbpf's btf__align_of does (BTF does not record it):
        natural for scalars, the largest member's for a struct, 1 if the struct is packed.
        ``__aligned(n)`` on a type is not visible in BTF."""
        return self._alignof(self.find(t), 0)

    def _alignof(self, tid: int, depth: int) -> int:
        if depth > MAX_CHAIN:
            raise BtfError(f"BTF type {tid}: nesting is a loop or deeper than {MAX_CHAIN}")
        k = self.kind(tid)
        if k in (INT, FLOAT, ENUM, ENUM64):
            size = self._w[self._offs[tid] + 2]
            return size if size in (1, 2, 4, 8, 16) else 1
        if k == PTR:
            return self.pointer_size
        if k in _QUALIFIERS or k == VAR:
            return self._alignof(self._ref(tid), depth + 1)
        if k == ARRAY:
            return self._alignof(self.array(tid)[0], depth + 1)
        if k not in _COMPOSITE:
            raise BtfLookupError(f"alignof {self.type_name(tid)}: incomplete type "
                                 f"({KIND_NAMES[k]})")
        got = self._align.get(tid)
        if got is not None:
            return got
        align = 1
        for m in self.members(tid):
            a = self._alignof(m.type, depth + 1)
            if not m.bitfield_size and m.bit_offset % (8 * a):
                align = 0  # a member off its natural alignment: packed
                break
            align = max(align, a)
        if not align or self._w[self._offs[tid] + 2] % align:
            align = 1
        self._align[tid] = align
        return align

    def field(self, struct_: int | str, path: str) -> Field:
        """The member at ``path`` of a struct or union: ``field("file", "f_path.dentry")``.

        Members of anonymous structs and unions are found as C finds them, by their own
        names; ``name[i]`` indexes an array member.
        """
        cur = self.find(struct_, None)
        bit, bits = 0, 0
        for name, idxs in _split_path(path):
            outer = self.resolve(cur)
            if self.kind(outer) not in _COMPOSITE:
                raise BtfLookupError(f"{self.type_name(cur)} is not a struct or union "
                                     f"(looking for {name} in {path})")
            got = self._member(outer, name, 0, {outer})
            if got is None:
                raise BtfLookupError(f"{self.type_name(outer)} has no member {name}")
            m, off = got
            bit, cur, bits = bit + off, m.type, m.bitfield_size
            for i in idxs:
                arr = self.resolve(cur)
                if self.kind(arr) != ARRAY:
                    raise BtfLookupError(f"{path}: {name} is not an array")
                elem, _, n = self.array(arr)
                if n and i >= n:
                    raise BtfLookupError(f"{path}: index {i} out of {name}[{n}]")
                bit, cur = bit + i * 8 * self.sizeof(elem), elem
        r = self.resolve(cur)
        kind = self.kind(r)
        if kind == INT and not bits:  # a bitfield encoded in the int (no kind_flag)
            _, ioff, ibits = self.int_info(r)
            if ioff or ibits != 8 * self.sizeof(r):
                bit, bits = bit + ioff, ibits
        return Field(path, cur, KIND_NAMES[kind], bit, bits, self.sizeof(cur))

    def _member(self, tid: int, name: str, depth: int,
                seen: set[int]) -> tuple[BtfMember, int] | None:
        """The first member called ``name``, looking into anonymous members in order."""
        if depth > MAX_CHAIN:
            raise BtfError(f"BTF type {tid}: anonymous members nested deeper than {MAX_CHAIN}")
        for m in self.members(tid):
            if m.name == name:
                return m, m.bit_offset
            if not m.name:
                inner = self.resolve(m.type)
                if self.kind(inner) in _COMPOSITE and inner not in seen:
                    seen.add(inner)
                    got = self._member(inner, name, depth + 1, seen)
                    if got is not None:
                        return got[0], m.bit_offset + got[1]
        return None

    def offsetof(self, struct_: int | str, path: str) -> int:
        """offsetof(struct, path) in bytes: ``offsetof("task_struct", "pid")``."""
        f = self.field(struct_, path)
        if f.bitfield_size:
            raise BtfLookupError(f"offsetof {path}: a bitfield has no byte offset")
        return f.offset

    # -- names for people -----------------------------------------------------------------

    def type_name(self, tid: int, inner: str = "") -> str:
        """The type as C writes it: ``const struct file *``, ``char [16]``."""
        return self._render(tid, inner, 0)

    def _render(self, tid: int, inner: str, depth: int) -> str:
        if depth > MAX_CHAIN:
            raise BtfError(f"BTF type {tid}: a loop or a chain longer than {MAX_CHAIN}")
        t = self.type(tid)
        k, sep = t.kind, " " if inner and not inner.startswith("[") else ""
        if k in (STRUCT, UNION, ENUM, ENUM64, FWD):
            tag = ("union" if t.kind_flag else "struct") if k == FWD else (
                "enum" if k == ENUM64 else t.kind_name)
            return f"{tag} {t.name or '(anon)'}{sep}{inner}"
        if k == PTR:
            target = self.kind(self._ref(tid))
            star = f"(*{inner})" if target in (ARRAY, FUNC_PROTO) else f"*{inner}"
            return self._render(self._ref(tid), star, depth + 1)
        if k == ARRAY:
            elem, _, n = self.array(tid)
            return self._render(elem, f"{inner}[{n}]", depth + 1)
        if k in (CONST, VOLATILE, RESTRICT):
            if self.kind(self._ref(tid)) == PTR:
                return self._render(self._ref(tid), f" {t.kind_name} {inner}".rstrip(), depth + 1)
            return f"{t.kind_name} " + self._render(self._ref(tid), inner, depth + 1)
        if k == TYPE_TAG:
            return self._render(self._ref(tid), inner, depth + 1)
        if k == FUNC_PROTO:
            args = ", ".join(self._render(p, "", depth + 1) if p else "..."
                             for _, p in self.params(tid)) or "void"
            return self._render(self._ref(tid), f"{inner}({args})", depth + 1)
        if k in (FUNC, VAR):
            return self._render(self._ref(tid), t.name, depth + 1)
        return f"{t.name or KIND_NAMES[k]}{sep}{inner}"

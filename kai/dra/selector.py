"""Device selectors compiled once into vectorized predicates over the inventory's columns.

A selector's CEL expression evaluates, per device, to true, false or an error (a missing
attribute, a type mismatch: CEL's error value). Results are uint8 codes ``F=0, T=1, E=2``
combined with CEL's commutative logic (``E && F == F``, ``E || T == T``).

:func:`compile_selector` parses the common shapes of DRA selectors

- ``device.driver == "x"`` (``!=``, ``in [...]``),
- ``device.attributes["dom"].id <op> literal`` (``==, !=, <, <=, >, >=, in [...]``; also
  ``["id"]`` and a bare bool attribute),
- ``device.capacity["dom"].id.compareTo(quantity("40Gi")) >= 0``, ``.isGreaterThan(...)``,
  ``.isLessThan(...)`` (and the same on version attributes with ``semver("1.2.3")``),
- ``"id" in device.attributes["dom"]`` / ``device.capacity["dom"]``,
- ``&&``, ``||``, ``!``, parentheses, ``true``/``false``

into a tree whose leaves each read one column. A leaf is evaluated on the column's distinct
values (a handful: interned per attribute) and gathered to devices with one ``take``, so a
selector over 8,000 devices costs a few numpy operations. Anything else (``cel.bind``,
macros, arithmetic, string functions) is evaluated per device by the CEL library
(:mod:`kai.dra.cel`), lazily and only on the devices asked about. Every expression is also
compiled by the library once, so a compile error is reported the same way on both paths.

The inventory (:class:`kai.dra.inventory.Inventory`) provides ``driver_ids``/``drivers``,
``attr_column(name)``, ``cap_column(name)`` and ``cel_device(row, domains)``.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from kai.api.resources import QuantityError, parse_quantity
from kai.dra.cel import CelCompileError, CelError, CelProgram, compile_expression
from kai.dra.semver import SemverError, semver_key

F, T, E = 0, 1, 2
_AND = np.array([F, F, F,  F, T, E,  F, E, E], dtype=np.uint8)     # [a * 3 + b]
_OR = np.array([F, T, E,  T, T, T,  E, T, E], dtype=np.uint8)
_NOT = np.array([T, F, E], dtype=np.uint8)


class Unsupported(Exception):
    """The expression is outside the vectorized subset (the CEL library evaluates it)."""


# --- tokens and parse tree ----------------------------------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)(?P<uint>[uU])?
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!.,()\[\]\-?:+*/%{}])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "/": "/"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise Unsupported("escape sequence")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise Unsupported(f"token at {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        if kind in ("int", "uint"):
            s = m.group("int")
            out.append(("lit", ("int", int(s, 16) if s[:2].lower() == "0x" else int(s))))
        elif kind == "double":
            out.append(("lit", ("double", float(m.group("double")))))
        elif kind == "str":
            if out and out[-1][0] == "ident" and out[-1][1] in ("r", "R", "b", "B"):
                raise Unsupported("raw or bytes string")
            out.append(("lit", ("string", _unescape(m.group("str")[1:-1]))))
        elif kind == "op":
            out.append(("op", m.group("op")))
        else:
            word = m.group("ident")
            if word in ("true", "false"):
                out.append(("lit", ("bool", word == "true")))
            elif word == "in":
                out.append(("op", "in"))
            elif word == "null":
                raise Unsupported("null")
            else:
                out.append(("ident", word))
    out.append(("end", None))
    return out


class _Parser:
    """Recursive descent over CEL's precedence levels; builds tuples, raises Unsupported."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self, kind: str, value: Any = None) -> Any:
        k, v = self.toks[self.i]
        if k != kind or (value is not None and v != value):
            raise Unsupported(f"expected {value or kind}")
        self.i += 1
        return v

    def is_op(self, *ops: str) -> bool:
        k, v = self.peek()
        return k == "op" and v in ops

    def parse(self) -> tuple:
        node = self.or_()
        if self.peek()[0] != "end":
            raise Unsupported("trailing input")
        return node

    def or_(self) -> tuple:
        node = self.and_()
        while self.is_op("||"):
            self.i += 1
            node = ("or", node, self.and_())
        if self.is_op("?"):
            raise Unsupported("conditional")
        return node

    def and_(self) -> tuple:
        node = self.rel()
        while self.is_op("&&"):
            self.i += 1
            node = ("and", node, self.rel())
        return node

    def rel(self) -> tuple:
        node = self.unary()
        while self.is_op("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take("op")
            node = ("rel", op, node, self.unary())
        if self.is_op("+", "-", "*", "/", "%"):
            raise Unsupported("arithmetic")
        return node

    def unary(self) -> tuple:
        if self.is_op("!"):
            self.i += 1
            return ("not", self.unary())
        if self.is_op("-"):
            self.i += 1
            k, v = self.peek()
            if k == "lit" and v[0] in ("int", "double"):
                self.i += 1
                return ("lit", (v[0], -v[1]))
            raise Unsupported("negation")
        return self.member()

    def member(self) -> tuple:
        node = self.primary()
        while True:
            if self.is_op("."):
                self.i += 1
                name = self.take("ident")
                if self.is_op("("):
                    node = ("call", name, node, self.args(")"))
                else:
                    node = ("select", node, name)
            elif self.is_op("["):
                self.i += 1
                key = self.or_()
                self.take("op", "]")
                node = ("index", node, key)
            else:
                return node

    def args(self, close: str) -> list[tuple]:
        self.take("op", "(" if close == ")" else "[")
        out: list[tuple] = []
        if not self.is_op(close):
            out.append(self.or_())
            while self.is_op(","):
                self.i += 1
                out.append(self.or_())
        self.take("op", close)
        return out

    def primary(self) -> tuple:
        k, v = self.peek()
        if k == "lit":
            self.i += 1
            return ("lit", v)
        if k == "ident":
            self.i += 1
            if self.is_op("("):
                return ("call", v, None, self.args(")"))
            return ("ident", v)
        if k == "op" and v == "(":
            self.i += 1
            node = self.or_()
            self.take("op", ")")
            return node
        if k == "op" and v == "[":
            return ("list", self.args("]"))
        raise Unsupported(f"unexpected {v!r}")


# --- value semantics (shared with the reference evaluation in tests) ---------------------

_NUMERIC = ("int", "double")


def compare(op: str, a_kind: str, a: Any, b_kind: str, b: Any) -> int:
    """CEL's ``a <op> b`` for two typed scalars: heterogeneous equality is false, ordering
    across types is an error; int and double compare numerically."""
    numeric = a_kind in _NUMERIC and b_kind in _NUMERIC
    if op in ("==", "!="):
        eq = (a == b) if (numeric or a_kind == b_kind) else False
        return T if eq == (op == "==") else F
    if not (numeric or (a_kind == b_kind and a_kind in ("string", "bool"))):
        return E
    res = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return T if res else F


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


class _Leaf:
    """One column read: ``column`` is ("driver",), ("attr", name) or ("cap", name); ``fn``
    maps a column value to a code; ``missing`` is the code of a device without the value."""

    __slots__ = ("column", "fn", "missing")

    def __init__(self, column: tuple, fn: Callable[[Any], int], missing: int = E) -> None:
        self.column, self.fn, self.missing = column, fn, missing


def _lit(node: tuple) -> tuple[str, Any] | None:
    return node[1] if node[0] == "lit" else None


def _string_key(node: tuple) -> str | None:
    lit = _lit(node)
    return lit[1] if lit is not None and lit[0] == "string" else None


def _path(node: tuple) -> tuple | None:
    """("driver",) | ("attrmap", dom) | ("capmap", dom) | ("attr", fq) | ("cap", fq) | None."""
    tag = node[0]
    if tag == "select" and node[1] == ("ident", "device") and node[2] == "driver":
        return ("driver",)
    if tag in ("select", "index"):
        key = node[2] if tag == "select" else _string_key(node[2])
        if key is None:
            return None
        base = node[1]
        if base[0] == "select" and base[1] == ("ident", "device") and base[2] in ("attributes", "capacity"):
            return ("attrmap" if base[2] == "attributes" else "capmap", key)
        inner = _path(base)
        if inner is not None and inner[0] in ("attrmap", "capmap"):
            return ("attr" if inner[0] == "attrmap" else "cap", f"{inner[1]}/{key}")
    return None


def _typed_call(node: tuple) -> tuple[tuple, str, str, Any] | None:
    """``X.method(quantity("..."))`` / ``X.method(semver("..."))`` -> (column, method, lib, arg)."""
    if node[0] != "call" or node[2] is None or len(node[3]) != 1:
        return None
    method, target, (arg,) = node[1], node[2], node[3]
    if method not in ("compareTo", "isGreaterThan", "isLessThan"):
        return None
    col = _path(target)
    if col is None or col[0] not in ("attr", "cap"):
        return None
    if arg[0] != "call" or arg[2] is not None or arg[1] not in ("quantity", "semver") or len(arg[3]) != 1:
        return None
    text = _string_key(arg[3][0])
    if text is None:
        return None
    lib = arg[1]
    try:
        parsed: Any = parse_quantity(text) if lib == "quantity" else semver_key(text)
    except (QuantityError, SemverError):
        parsed = None          # the library errors at run time: every device gets E
    return col, method, lib, parsed


def _cmp_fn(lib: str, parsed: Any, col_kind: str) -> Callable[[Any], int | None]:
    """Column value -> compareTo result (-1/0/1), or None for CEL's no-matching-overload."""
    def f(value: Any) -> int | None:
        if parsed is None:
            return None
        if lib == "quantity":
            if col_kind != "cap":
                return None
            q = value
        else:
            if col_kind != "attr" or value[0] != "version":
                return None
            q = semver_key(value[1])
        return (q > parsed) - (q < parsed)
    return f


def _value_of(col: tuple, value: Any) -> tuple[str, Any]:
    """(kind, value) of a column entry for comparisons."""
    if col[0] == "driver":
        return "string", value
    if col[0] == "cap":
        return "quantity", value
    return value


def _build(node: tuple) -> Any:
    """Parse tree -> predicate tree of ("and"|"or", a, b), ("not", a), ("const", code), _Leaf."""
    tag = node[0]
    if tag in ("and", "or"):
        return (tag, _build(node[1]), _build(node[2]))
    if tag == "not":
        return ("not", _build(node[1]))
    if tag == "lit":
        if node[1][0] == "bool":
            return ("const", T if node[1][1] else F)
        raise Unsupported("non-bool literal")
    if tag == "call":
        tc = _typed_call(node)
        if tc is None or tc[1] == "compareTo":
            raise Unsupported("call")
        col, method, lib, parsed = tc
        cmp = _cmp_fn(lib, parsed, col[0])
        want = 1 if method == "isGreaterThan" else -1

        def leaf_fn(v: Any, cmp=cmp, want=want) -> int:
            c = cmp(v)
            return E if c is None else (T if c == want else F)
        return _Leaf(col, leaf_fn)
    if tag == "rel":
        return _build_rel(node[1], node[2], node[3])
    col = _path(node)
    if col is not None and col[0] == "attr":
        return _Leaf(col, lambda v: (T if v[1] else F) if v[0] == "bool" else E)
    raise Unsupported(tag)


def _build_rel(op: str, left: tuple, right: tuple) -> Any:
    if op == "in":
        key = _string_key(left)
        rpath = _path(right)
        if key is not None and rpath is not None and rpath[0] in ("attrmap", "capmap"):
            col = ("attr" if rpath[0] == "attrmap" else "cap", f"{rpath[1]}/{key}")
            return _Leaf(col, lambda v: T, missing=F)
        lpath = _path(left)
        if lpath is None or lpath[0] not in ("driver", "attr") or right[0] != "list":
            raise Unsupported("in")
        items = [_lit(x) for x in right[1]]
        if any(x is None for x in items):
            raise Unsupported("list item")

        def in_fn(v: Any, col=lpath, items=items) -> int:
            kind, val = _value_of(col, v)
            return T if any(compare("==", kind, val, k, x) == T for k, x in items) else F
        return _Leaf(lpath, in_fn)
    # typed compareTo against a number
    for a, b, o in ((left, right, op), (right, left, _FLIP[op])):
        tc = _typed_call(a)
        lit = _lit(b)
        if tc is not None and tc[1] == "compareTo" and lit is not None:
            col, _, lib, parsed = tc
            cmp = _cmp_fn(lib, parsed, col[0])

            def cmp_leaf(v: Any, cmp=cmp, o=o, lit=lit) -> int:
                c = cmp(v)
                return E if c is None else compare(o, "int", c, lit[0], lit[1])
            return _Leaf(col, cmp_leaf)
    for a, b, o in ((left, right, op), (right, left, _FLIP[op])):
        col = _path(a)
        lit = _lit(b)
        if col is not None and col[0] in ("driver", "attr") and lit is not None:
            def rel_leaf(v: Any, col=col, o=o, lit=lit) -> int:
                kind, val = _value_of(col, v)
                return compare(o, kind, val, lit[0], lit[1])
            return _Leaf(col, rel_leaf)
    raise Unsupported("relation")


# --- selectors ----------------------------------------------------------------------------

class Selector:
    """One compiled expression. ``vectorized`` tells which path evaluates it."""

    __slots__ = ("expression", "program", "tree", "error")

    def __init__(self, expression: str, program: CelProgram | None, tree: Any, error: str) -> None:
        self.expression = expression
        self.program = program
        self.tree = tree
        self.error = error          # compile error (then every device is E)

    @property
    def vectorized(self) -> bool:
        return self.tree is not None

    def evaluate(self, inv: Any, where: np.ndarray | None = None) -> np.ndarray:
        """uint8[D] codes for the inventory's devices (cached on the inventory).

        ``where`` (bool[D]) limits the per-device library path to those devices; the others
        read F until asked about. The vectorized path always evaluates every device.
        """
        cache = inv.selector_cache
        key = self.expression
        if self.error:
            return np.full(inv.n_devices, E, dtype=np.uint8)
        if self.tree is not None:
            got = cache.get(key)
            if got is None:
                got = cache[key] = _eval_tree(self.tree, inv)
            return got
        codes, done = cache.get(key) or (np.zeros(inv.n_devices, dtype=np.uint8),
                                         np.zeros(inv.n_devices, dtype=bool))
        cache[key] = (codes, done)
        todo = ~done if where is None else (where & ~done)
        rows = np.flatnonzero(todo)
        if len(rows):
            prog = self.program
            for d in rows.tolist():
                r = prog.evaluate(inv.cel_device(d, prog.domains))
                codes[d] = E if isinstance(r, CelError) else (T if r else F)
            done[rows] = True
        return codes

    def runtime_error(self, inv: Any, row: int) -> str:
        """The library's message for a device whose code is E (for reasons)."""
        if self.error:
            return self.error
        if self.program is None:
            return "CEL library unavailable"
        r = self.program.evaluate(inv.cel_device(row, self.program.domains))
        return r.message if isinstance(r, CelError) else "evaluation error"


def _eval_tree(node: Any, inv: Any) -> np.ndarray:
    if isinstance(node, _Leaf):
        col = node.column
        if col[0] == "driver":
            ids, values = inv.driver_ids, inv.drivers
        elif col[0] == "attr":
            ids, values = inv.attr_column(col[1])
        else:
            ids, values = inv.cap_column(col[1])
        table = np.empty(len(values) + 1, dtype=np.uint8)
        for i, v in enumerate(values):
            table[i] = node.fn(v)
        table[-1] = node.missing               # ids == -1 read the last entry
        return table[ids]
    tag = node[0]
    if tag == "const":
        return np.full(inv.n_devices, node[1], dtype=np.uint8)
    if tag == "not":
        return _NOT[_eval_tree(node[1], inv)]
    a = _eval_tree(node[1], inv)
    b = _eval_tree(node[2], inv)
    return (_AND if tag == "and" else _OR)[a * np.uint8(3) + b]


_SELECTORS: dict[str, Selector] = {}


def compile_selector(expression: str) -> Selector:
    """Compile once per expression (memoized for the process)."""
    got = _SELECTORS.get(expression)
    if got is not None:
        return got
    program, error = None, ""
    try:
        program = compile_expression(expression)
    except CelCompileError as exc:
        error = f"CEL compile error: {exc}"
    tree = None
    if not error:
        try:
            tree = _build(_Parser(expression).parse())
        except (Unsupported, RecursionError):
            tree = None
    sel = Selector(expression, program, tree, error)
    if len(_SELECTORS) < 10_000:
        _SELECTORS[expression] = sel
    return sel


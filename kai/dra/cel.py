"""The CEL library behind device selectors that :mod:`kai.dra.selector` cannot vectorize.

kube-scheduler evaluates a DeviceClass or request selector against one device at a time with
the variable ``device = {driver, attributes: {domain: {id: value}}, capacity: {domain: {id:
Quantity}}}``; attribute names without a domain live under the driver's name, and a domain
the device lacks reads as an empty map. This module builds that environment on
cel-expr-python (Google's cel-cpp; chosen by bench/bench_dra_cel.py, figures in
docs/benchmarks.md) with Kubernetes' ``quantity()`` and ``semver()`` libraries:

- ``quantity(s)``, ``isQuantity(s)``; on quantities ``compareTo``, ``isGreaterThan``,
  ``isLessThan``, ``add``, ``sub``, ``asInteger``, ``asApproximateFloat``, ``sign``,
  ``isInteger``;
- ``semver(s)``, ``isSemver(s)``; on versions ``compareTo``, ``isGreaterThan``,
  ``isLessThan``, ``major``, ``minor``, ``patch``;
- ``cel.bind`` and the CEL strings extension.

The library has no opaque Python types, so a quantity travels as the map
``{"@quantity": "<exact decimal>"}`` and a version as ``{"@semver": "<text>"}``; the
functions above unwrap them. Each expression compiles once (:func:`compile_expression` is
memoized); evaluation returns True, False or a :class:`CelError` (CEL's error value: a
missing attribute, a type mismatch), never raises. If the library cannot be imported, every
expression that needs it fails closed with a reason saying so.
"""
from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from kai.api.resources import QuantityError, parse_quantity
from kai.dra.semver import SemverError, compare_semver, parse_semver

try:   # a declared dependency; guarded so a platform without its wheel fails closed, not at import
    from cel_expr_python import cel as _cel
    from cel_expr_python.ext import ext_bindings as _ext_bindings
    from cel_expr_python.ext import ext_strings as _ext_strings
    LIBRARY = "cel-expr-python"
    _IMPORT_ERROR = ""
except ImportError as exc:   # pragma: no cover - exercised only where the wheel is missing
    _cel = None
    LIBRARY = ""
    _IMPORT_ERROR = str(exc)

Q = "@quantity"
V = "@semver"


class CelError:
    """CEL's error value: the expression could not be evaluated for this device."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"CelError({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)


class CelCompileError(ValueError):
    """The expression does not compile (syntax, unknown function, not a bool)."""


# --- values ------------------------------------------------------------------------------

def quantity_text(value: Decimal) -> str:
    """Exact, canonical text of a quantity value (so equal quantities are equal maps)."""
    v = value.normalize()
    return format(v, "f") if v != 0 else "0"


def quantity_value(q: Decimal) -> dict[str, str]:
    return {Q: quantity_text(q)}


def semver_value(text: str) -> dict[str, str]:
    return {V: text}


def device_value(driver: str, attributes: dict[str, tuple[str, Any]], capacity: dict[str, Decimal],
                 domains: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``device`` variable for one device.

    ``attributes`` maps fully qualified names (``domain/id``) to ``(type, value)`` as
    :func:`kai.api.dra.attribute_value` returns them; ``capacity`` maps them to quantities.
    ``domains`` are extra domains to present as empty maps (an absent domain reads as ``{}``
    in kube-scheduler's environment).
    """
    attrs: dict[str, dict[str, Any]] = {d: {} for d in domains}
    for name, (kind, v) in attributes.items():
        dom, _, ident = name.partition("/")
        attrs.setdefault(dom, {})[ident] = semver_value(v) if kind == "version" else v
    caps: dict[str, dict[str, Any]] = {d: {} for d in domains}
    for name, q in capacity.items():
        dom, _, ident = name.partition("/")
        caps.setdefault(dom, {})[ident] = quantity_value(q)
    return {"driver": driver, "attributes": attrs, "capacity": caps}


_DOMAIN_RE = re.compile(r"""device\s*\.\s*(?:attributes|capacity)\s*(?:\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]"""
                        r"""|\.\s*([A-Za-z_][A-Za-z0-9_]*))""")


def referenced_domains(expression: str) -> tuple[str, ...]:
    """Domains an expression indexes literally (``device.attributes["gpu.example.com"]``)."""
    return tuple(sorted({next(g for g in m.groups() if g is not None) for m in _DOMAIN_RE.finditer(expression)}))


# --- library functions -------------------------------------------------------------------

def _q(x: Any) -> Decimal:
    if isinstance(x, dict) and Q in x:
        return Decimal(x[Q])
    if isinstance(x, int) and not isinstance(x, bool):
        return Decimal(x)
    raise TypeError("no matching overload: expected a quantity")


def _v(x: Any) -> str:
    if isinstance(x, dict) and V in x:
        return x[V]
    raise TypeError("no matching overload: expected a semver")


def _quantity(s: str) -> dict:
    try:
        return quantity_value(parse_quantity(s))
    except QuantityError as exc:
        raise ValueError(str(exc)) from None


def _is_quantity(s: str) -> bool:
    try:
        parse_quantity(s)
        return True
    except QuantityError:
        return False


def _semver(s: str) -> dict:
    parse_semver(s)
    return semver_value(s)


def _is_semver(s: str) -> bool:
    try:
        parse_semver(s)
        return True
    except SemverError:
        return False


def _compare(a: Any, b: Any) -> int:
    if isinstance(a, dict) and V in a:
        return compare_semver(_v(a), _v(b))
    qa, qb = _q(a), _q(b)
    return (qa > qb) - (qa < qb)


def _as_integer(a: Any) -> int:
    q = _q(a)
    if q != q.to_integral_value() or not -(2**63) <= q < 2**63:
        raise ValueError("cannot convert value to integer")
    return int(q)


def _is_integer(a: Any) -> bool:
    q = _q(a)
    return q == q.to_integral_value() and -(2**63) <= q < 2**63


def _sign(a: Any) -> int:
    q = _q(a)
    return (q > 0) - (q < 0)


def _semver_part(i: int):
    def part(a: Any) -> int:
        return parse_semver(_v(a))[i]
    return part


def _build_env():
    if _cel is None:
        return None
    T = _cel.Type
    M = T.Map(T.STRING, T.DYN)

    def ov(name: str, ret, params, impl, member=False):
        return _cel.Overload(name, ret, params, is_member=member, impl=impl)

    funcs = [
        _cel.FunctionDecl("quantity", [ov("quantity_string", M, [T.STRING], _quantity)]),
        _cel.FunctionDecl("isQuantity", [ov("is_quantity_string", T.BOOL, [T.STRING], _is_quantity)]),
        _cel.FunctionDecl("semver", [ov("semver_string", M, [T.STRING], _semver)]),
        _cel.FunctionDecl("isSemver", [ov("is_semver_string", T.BOOL, [T.STRING], _is_semver)]),
        _cel.FunctionDecl("compareTo", [ov("k_compare_to", T.INT, [M, M], _compare, True)]),
        _cel.FunctionDecl("isGreaterThan", [ov("k_greater", T.BOOL, [M, M], lambda a, b: _compare(a, b) > 0, True)]),
        _cel.FunctionDecl("isLessThan", [ov("k_less", T.BOOL, [M, M], lambda a, b: _compare(a, b) < 0, True)]),
        _cel.FunctionDecl("add", [ov("q_add_q", M, [M, M], lambda a, b: quantity_value(_q(a) + _q(b)), True),
                                  ov("q_add_int", M, [M, T.INT], lambda a, b: quantity_value(_q(a) + b), True)]),
        _cel.FunctionDecl("sub", [ov("q_sub_q", M, [M, M], lambda a, b: quantity_value(_q(a) - _q(b)), True),
                                  ov("q_sub_int", M, [M, T.INT], lambda a, b: quantity_value(_q(a) - b), True)]),
        _cel.FunctionDecl("asInteger", [ov("q_as_integer", T.INT, [M], _as_integer, True)]),
        _cel.FunctionDecl("asApproximateFloat", [ov("q_as_float", T.DOUBLE, [M], lambda a: float(_q(a)), True)]),
        _cel.FunctionDecl("isInteger", [ov("q_is_integer", T.BOOL, [M], _is_integer, True)]),
        _cel.FunctionDecl("sign", [ov("q_sign", T.INT, [M], _sign, True)]),
        _cel.FunctionDecl("major", [ov("v_major", T.INT, [M], _semver_part(0), True)]),
        _cel.FunctionDecl("minor", [ov("v_minor", T.INT, [M], _semver_part(1), True)]),
        _cel.FunctionDecl("patch", [ov("v_patch", T.INT, [M], _semver_part(2), True)]),
    ]
    return _cel.NewEnv(variables={"device": T.DYN}, functions=funcs,
                       extensions=[_ext_bindings.ExtBindings(), _ext_strings.ExtStrings()])


_ENV = None


def _env():
    global _ENV
    if _ENV is None:
        _ENV = _build_env()
    return _ENV


class CelProgram:
    """One compiled selector expression; :meth:`evaluate` per device."""

    __slots__ = ("expression", "domains", "_expr", "_env")

    def __init__(self, expression: str, expr, env) -> None:
        self.expression = expression
        self.domains = referenced_domains(expression)
        self._expr = expr
        self._env = env

    def evaluate(self, device: dict[str, Any]) -> bool | CelError:
        try:
            v = self._expr.eval(data={"device": device})
        except Exception as exc:   # noqa: BLE001 - the library raises for internal failures
            return CelError(str(exc))
        t = v.type()
        if t == _cel.Type.BOOL:
            return bool(v.value())
        if t == _cel.Type.ERROR:
            return CelError(str(v.value()))
        return CelError(f"expression returned {t.name()}, not bool")


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> CelProgram:
    """Compile once (memoized); raises CelCompileError."""
    env = _env()
    if env is None:
        raise CelCompileError(f"CEL library cel-expr-python is not installed ({_IMPORT_ERROR})")
    try:
        expr = env.compile(expression)
    except Exception as exc:   # noqa: BLE001 - syntax and type-check errors come as RuntimeError
        raise CelCompileError(str(exc).replace("\n", " ")) from None
    ret = expr.return_type()
    if ret != _cel.Type.BOOL and ret != _cel.Type.DYN:
        raise CelCompileError(f"must evaluate to bool, not {ret.name()}")
    return CelProgram(expression, expr, env)


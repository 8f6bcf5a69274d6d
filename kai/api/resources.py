"""Resource columns and Kubernetes quantity parsing.

Every resource vector in kai (pod requests, node allocatable, queue quotas) is a row of
float64 over a fixed set of columns. The first five are fixed; extended resources
(``nvidia.com/mig-1g.5gb``, ``example.com/foo``) get columns on demand from a
:class:`ResourceRegistry`.

Units: cpu in millicores, memory and ephemeral-storage in bytes, gpu in devices, pods in
pods, extended resources in their integer units. All are exact in float64 up to 2**53.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

CPU = 0
MEMORY = 1
GPU = 2
PODS = 3
EPHEMERAL = 4
N_FIXED = 5

GPU_RESOURCE = "nvidia.com/gpu"
FIXED_NAMES = ("cpu", "memory", GPU_RESOURCE, "pods", "ephemeral-storage")
MIG_PREFIX = "nvidia.com/mig-"
_MIG_RE = re.compile(r"^nvidia\.com/mig-(\d+)g\.(\d+)gb$")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+))(?:(?P<exp>[eE][+-]?\d+)|(?P<suf>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or a negative one where that is not allowed."""


# Kubernetes keeps a quantity's value in an int64 (``Quantity.Value()``); kai rejects anything
# whose magnitude does not fit, and exponents that could not be (and would be slow to) expand.
MAX_QUANTITY = Decimal(2**63 - 1)
_MAX_EXPONENT = 30
# More whole GPUs than any node carries: the per-device slot arrays of the node table are
# sized from a node's GPU count, so an absurd count is rejected instead of allocated.
MAX_GPUS_PER_NODE = 1024


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a Kubernetes quantity (``500m``, ``1Gi``, ``2e3``, ``1.5``) into an exact Decimal."""
    if isinstance(value, bool):
        raise QuantityError(f"invalid quantity {value!r}")
    if isinstance(value, int):
        return _bounded(Decimal(value), value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"invalid quantity {value!r}")
        return _bounded(Decimal(repr(value)), value)
    if not isinstance(value, str):
        raise QuantityError(f"invalid quantity {value!r}: expected a string or number")
    if len(value) > 64:
        raise QuantityError(f"invalid quantity {value[:32]!r}...: too long")
    m = _QUANTITY_RE.match(value.strip())
    if not m:
        raise QuantityError(f"invalid quantity {value!r}")
    try:
        num = Decimal(m.group("num"))
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise QuantityError(f"invalid quantity {value!r}") from exc
    if m.group("exp"):
        exp = int(m.group("exp")[1:])
        if exp > _MAX_EXPONENT and num != 0:
            raise QuantityError(f"quantity {value!r} is too large (more than 2^63)")
        if abs(exp) > _MAX_EXPONENT:
            raise QuantityError(f"invalid quantity {value!r}: exponent out of range")
        out = num * (Decimal(10) ** exp)
    else:
        suf = m.group("suf") or ""
        out = num * (_BINARY[suf] if suf in _BINARY else _DECIMAL[suf])
    return _bounded(out, value)


def _bounded(d: Decimal, value) -> Decimal:
    if abs(d) > MAX_QUANTITY:
        raise QuantityError(f"quantity {value!r} is too large (more than 2^63)")
    return d


def _ceil(d: Decimal) -> int:
    return int(d.to_integral_value(rounding="ROUND_CEILING"))


def to_milli(value) -> int:
    """Quantity -> milli-units, rounded up as Kubernetes' ``MilliValue`` does."""
    return _ceil(parse_quantity(value) * 1000)


def to_units(value) -> int:
    """Quantity -> whole units (bytes for memory), rounded up as Kubernetes' ``Value`` does."""
    return _ceil(parse_quantity(value))


def mig_gpu_equivalent(name: str) -> int:
    """GPUs a MIG resource counts for in quota (``nvidia.com/mig-3g.20gb`` -> 3), else 0."""
    m = _MIG_RE.match(name)
    return int(m.group(1)) if m else 0


class ResourceRegistry:
    """Maps resource names to columns. Fixed columns first; extended ones appended on demand.

    One registry is shared by a cluster cache; a new extended resource grows the width of
    every array built from it (the snapshot re-pads its arrays when that happens).
    """

    def __init__(self) -> None:
        self.names: list[str] = list(FIXED_NAMES)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self._cache: dict[tuple[str, object], float] = {}
        self.request_cache: dict[tuple, object] = {}   # pod resource fields -> request vector
        self._mig: tuple[int, tuple[tuple[int, int], ...]] = (-1, ())

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str, create: bool = True) -> int:
        col = self.index.get(name)
        if col is None:
            if not create:
                return -1
            col = len(self.names)
            self.names.append(name)
            self.index[name] = col
        return col

    def quantity_to_float(self, name: str, value) -> float:
        """Convert a quantity for resource ``name`` into kai's unit for its column (memoized)."""
        key = (name, value)
        got = self._cache.get(key)
        if got is None:
            got = float(to_milli(value)) if name == "cpu" else float(to_units(value))
            if len(self._cache) < 100_000:
                self._cache[key] = got
        return got

    def mig_columns(self) -> tuple[tuple[int, int], ...]:
        """(column, gpu equivalent) for every MIG resource registered so far (cached until a
        new resource is registered)."""
        if self._mig[0] != len(self.names):
            self._mig = (len(self.names),
                         tuple((i, g) for i, n in enumerate(self.names) if (g := mig_gpu_equivalent(n))))
        return self._mig[1]


def format_resource(name: str, amount: float) -> str:
    """Human form of one resource amount in kai units, for messages."""
    if name == "cpu":
        return f"{amount / 1000:g}" if amount % 1000 == 0 else f"{amount:g}m"
    if name in ("memory", "ephemeral-storage"):
        for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if amount >= size and amount % size == 0:
                return f"{amount / size:g}{unit}"
        return f"{amount:g}"
    return f"{amount:g}"

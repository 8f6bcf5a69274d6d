"""kai.api.resources: Kubernetes quantity parsing (with k8s rounding) and resource columns."""
from decimal import Decimal

import pytest

from kai.api import resources as R
from kai.api.resources import (QuantityError, ResourceRegistry, format_resource, mig_gpu_equivalent,
                               parse_quantity, to_milli, to_units)


@pytest.mark.parametrize("text, exact", [
    ("500m", Decimal("0.5")),
    ("1Gi", Decimal(2**30)),
    ("1Mi", Decimal(2**20)),
    ("1Ki", Decimal(1024)),
    ("2e3", Decimal(2000)),
    ("1.5", Decimal("1.5")),
    ("0.1", Decimal("0.1")),
    ("1k", Decimal(1000)),
    ("1M", Decimal(10**6)),
    ("1G", Decimal(10**9)),
    ("12e-3", Decimal("0.012")),
    ("100n", Decimal("1e-7")),
    ("3u", Decimal("3e-6")),
    (".5", Decimal("0.5")),
    ("+2", Decimal(2)),
    ("  4  ", Decimal(4)),
    (8, Decimal(8)),
    (0.25, Decimal("0.25")),
])
def test_parse_quantity_exact(text, exact):
    assert parse_quantity(text) == exact


@pytest.mark.parametrize("text, milli, units", [
    ("500m", 500, 1),          # Value() rounds 0.5 up to 1
    ("0.1", 100, 1),
    ("1.5", 1500, 2),
    ("12e-3", 12, 1),
    ("1k", 1_000_000, 1000),
    ("2e3", 2_000_000, 2000),
    ("1Gi", 2**30 * 1000, 2**30),
    ("1n", 1, 1),              # MilliValue rounds 1e-6 milli up to 1
    ("0", 0, 0),
    ("1001m", 1001, 2),
])
def test_milli_and_units_round_up_like_kubernetes(text, milli, units):
    assert to_milli(text) == milli
    assert to_units(text) == units


@pytest.mark.parametrize("bad", ["abc", "", "1.2.3", "1Gb", "1 Gi", "Gi", "1e", "1ki", "--1", "1e3Gi",
                                 True, None, [1], float("inf"), float("nan"),
                                 # beyond int64 (Kubernetes' Value()), or exponents that cannot be expanded
                                 "1e400", "1e99999999999", "1e-400", "9223372036854775808", "8Ei", 10**19, 1e300,
                                 "1" * 100])
def test_invalid_quantities_raise(bad):
    with pytest.raises(QuantityError):
        parse_quantity(bad)


def test_negative_quantity_parses_negative():
    # parse_quantity itself accepts a sign; callers (pod requests, loader) reject negatives
    assert parse_quantity("-1") == -1
    assert to_milli("-500m") == -500
    assert issubclass(QuantityError, ValueError)


def test_registry_fixed_columns():
    reg = ResourceRegistry()
    assert len(reg) == R.N_FIXED == 5
    assert reg.column("cpu") == R.CPU == 0
    assert reg.column("memory") == R.MEMORY == 1
    assert reg.column("nvidia.com/gpu") == R.GPU == 2
    assert reg.column("pods") == R.PODS == 3
    assert reg.column("ephemeral-storage") == R.EPHEMERAL == 4


def test_registry_extended_columns_on_demand():
    reg = ResourceRegistry()
    assert reg.column("example.com/foo", create=False) == -1
    assert len(reg) == 5
    assert reg.column("example.com/foo") == 5
    assert reg.column("nvidia.com/mig-3g.20gb") == 6
    assert reg.column("example.com/foo") == 5          # stable
    assert len(reg) == 7
    assert reg.names[5:] == ["example.com/foo", "nvidia.com/mig-3g.20gb"]
    assert reg.mig_columns() == ((6, 3),)


def test_registry_units():
    reg = ResourceRegistry()
    assert reg.quantity_to_float("cpu", "250m") == 250.0
    assert reg.quantity_to_float("cpu", 2) == 2000.0
    assert reg.quantity_to_float("memory", "1Gi") == float(2**30)
    assert reg.quantity_to_float("memory", "1.5") == 2.0
    assert reg.quantity_to_float("nvidia.com/gpu", "4") == 4.0


def test_mig_gpu_equivalent():
    assert mig_gpu_equivalent("nvidia.com/mig-1g.5gb") == 1
    assert mig_gpu_equivalent("nvidia.com/mig-7g.80gb") == 7
    assert mig_gpu_equivalent("nvidia.com/gpu") == 0
    assert mig_gpu_equivalent("example.com/mig-1g.5gb") == 0


def test_format_resource():
    assert format_resource("cpu", 2000) == "2"
    assert format_resource("cpu", 1500) == "1500m"
    assert format_resource("memory", 2**31) == "2Gi"
    assert format_resource("memory", 3 * 2**20) == "3Mi"
    assert format_resource("memory", 1000) == "1000"
    assert format_resource("nvidia.com/gpu", 4) == "4"

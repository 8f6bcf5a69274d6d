"""Vectorized selectors agree with the CEL library, device by device (including CEL errors)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kai.dra.cel import CelError, compile_expression
from kai.dra.inventory import build_inventory
from kai.dra.selector import E, F, T, compile_selector
from kai.testing import dra as B

DOM = "gpu.example.com"


def inventory(devices, driver=DOM):
    return build_inventory([B.resource_slice("s", devices, driver=driver, node="n0")], ["n0"])


def library_codes(expr, inv):
    prog = compile_expression(expr)
    out = []
    for row in range(inv.n_devices):
        r = prog.evaluate(inv.cel_device(row, prog.domains))
        out.append(E if isinstance(r, CelError) else (T if r else F))
    return out


DEVICES = [
    B.device("a", {"model": "A100", "index": 0, "mig": False, "ver": ("version", "1.2.3")}, {"memory": "80Gi"}),
    B.device("b", {"model": "H100", "index": 1, "mig": True, "ver": ("version", "2.0.0-rc.1")}, {"memory": "40Gi"}),
    B.device("c", {"model": "A100", "index": "one"}, {"memory": "39Gi"}),
    B.device("d", {"other.example.com/zone": "z1"}),
]


@pytest.mark.parametrize("expr,expected", [
    (f'device.driver == "{DOM}"', [T, T, T, T]),
    ('device.driver != "x"', [T, T, T, T]),
    (f'device.driver in ["{DOM}", "y"]', [T, T, T, T]),
    (f'device.attributes["{DOM}"].model == "A100"', [T, F, T, E]),
    (f'device.attributes["{DOM}"]["model"] != "A100"', [F, T, F, E]),
    (f'device.attributes["{DOM}"].index >= 1', [F, T, E, E]),
    (f'device.attributes["{DOM}"].index == 1.0', [F, T, F, E]),
    (f'device.attributes["{DOM}"].index in [0, "one"]', [T, F, T, E]),
    (f'device.attributes["{DOM}"].mig', [F, T, E, E]),
    (f'!device.attributes["{DOM}"].mig', [T, F, E, E]),
    (f'"mig" in device.attributes["{DOM}"]', [T, T, F, F]),
    (f'"memory" in device.capacity["{DOM}"]', [T, T, T, F]),
    (f'device.capacity["{DOM}"].memory.compareTo(quantity("40Gi")) >= 0', [T, T, F, E]),
    (f'0 < device.capacity["{DOM}"].memory.compareTo(quantity("40Gi"))', [T, F, F, E]),
    (f'device.capacity["{DOM}"].memory.isGreaterThan(quantity("40Gi"))', [T, F, F, E]),
    (f'device.capacity["{DOM}"].memory.isLessThan(quantity("40Gi"))', [F, F, T, E]),
    (f'device.attributes["{DOM}"].ver.isGreaterThan(semver("2.0.0-alpha"))', [F, T, E, E]),
    (f'device.attributes["{DOM}"].ver.compareTo(semver("1.2.3")) == 0', [T, F, E, E]),
    (f'device.attributes["{DOM}"].model == "A100" || device.attributes["{DOM}"].index == 1', [T, T, T, E]),
    (f'device.attributes["{DOM}"].model == "A100" && device.attributes["{DOM}"].index == 0', [T, F, F, E]),
    (f'device.attributes["{DOM}"].index == 0 || true', [T, T, T, T]),
    (f'device.attributes["{DOM}"].index == 0 && false', [F, F, F, F]),
    ('device.attributes["other.example.com"].zone == "z1"', [E, E, E, T]),
    (f'device.capacity["{DOM}"].memory.compareTo(quantity("bogus")) >= 0', [E, E, E, E]),
])
def test_vectorized_cases_match_library(expr, expected):
    inv = inventory(DEVICES)
    sel = compile_selector(expr)
    assert sel.vectorized, expr
    assert sel.evaluate(inv).tolist() == expected
    assert library_codes(expr, inv) == expected


@pytest.mark.parametrize("expr", [
    f'cel.bind(g, device.attributes["{DOM}"], g.model == "A100")',
    f'device.attributes["{DOM}"].model.startsWith("A")',
    f'device.attributes["{DOM}"].index + 1 == 2',
    f'device.capacity["{DOM}"].memory.asInteger() > 1',
    f'device.attributes["{DOM}"].index == 0 ? true : false',
])
def test_other_shapes_fall_back_to_the_library(expr):
    inv = inventory(DEVICES)
    sel = compile_selector(expr)
    assert not sel.vectorized and not sel.error
    assert sel.evaluate(inv).tolist() == library_codes(expr, inv)


def test_fallback_evaluates_only_where_asked_and_caches():
    inv = inventory(DEVICES)
    sel = compile_selector(f'device.attributes["{DOM}"].model.startsWith("H")')
    where = np.array([True, True, False, False])
    assert sel.evaluate(inv, where=where).tolist()[:2] == [F, T]
    assert sel.evaluate(inv).tolist() == [F, T, F, E]


def test_compile_error_is_an_error_for_every_device():
    inv = inventory(DEVICES)
    sel = compile_selector("device.driver ==")
    assert sel.error.startswith("CEL compile error")
    assert sel.evaluate(inv).tolist() == [E] * 4
    assert compile_selector('"a" == 1').error          # the library's type check still applies


def test_unqualified_names_live_under_the_driver():
    inv = inventory([B.device("x", {"model": "A"})], driver="d.example.com")
    assert compile_selector('device.attributes["d.example.com"].model == "A"').evaluate(inv).tolist() == [T]


# --- property: random expressions of the vectorized subset ---------------------------------

ATTRS = ["model", "index", "mig", "ver", "missing"]
LITS = st.sampled_from(['"A100"', '"H100"', '0', '1', '2', '1.5', 'true', 'false', '"x"'])


def leaf():
    attr = st.sampled_from(ATTRS).map(lambda a: f'device.attributes["{DOM}"].{a}')
    rel = st.tuples(attr, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), LITS).map(" ".join)
    rel_flipped = st.tuples(LITS, st.sampled_from(["==", "<", ">="]), attr).map(" ".join)
    inn = st.tuples(attr, st.lists(LITS, min_size=1, max_size=3)).map(lambda t: f"{t[0]} in [{', '.join(t[1])}]")
    cap = st.tuples(st.sampled_from(["memory", "nope"]), st.sampled_from(["1Gi", "40Gi", "80Gi", "100"]),
                    st.sampled_from([">=", "<", "=="]), st.sampled_from(["0", "1", "-1"])).map(
        lambda t: f'device.capacity["{DOM}"].{t[0]}.compareTo(quantity("{t[1]}")) {t[2]} {t[3]}')
    ver = st.tuples(st.sampled_from(["isGreaterThan", "isLessThan"]), st.sampled_from(["1.0.0", "2.0.0", "2.0.0-rc.2"])
                    ).map(lambda t: f'device.attributes["{DOM}"].ver.{t[0]}(semver("{t[1]}"))')
    pres = st.sampled_from(ATTRS).map(lambda a: f'"{a}" in device.attributes["{DOM}"]')
    drv = st.sampled_from([f'device.driver == "{DOM}"', 'device.driver != "gpu.example.com"', "true", "false"])
    return st.one_of(rel, rel_flipped, inn, cap, ver, pres, drv, attr)


exprs = st.recursive(leaf(), lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda e: f"!({e})")), max_leaves=6)

VALUES = {"model": st.sampled_from(["A100", "H100", 1]), "index": st.sampled_from([0, 1, 2, "1", True]),
          "mig": st.sampled_from([True, False, "true"]),
          "ver": st.sampled_from([("version", "1.0.0"), ("version", "2.0.0-rc.1"), ("version", "2.0.0"), "2.0.0"])}


@st.composite
def devices(draw):
    out = []
    for i in range(draw(st.integers(1, 6))):
        attrs = {k: draw(v) for k, v in VALUES.items() if draw(st.booleans())}
        caps = {"memory": draw(st.sampled_from(["1Gi", "40Gi", "80Gi", "100", "0.5"]))} if draw(st.booleans()) else {}
        out.append(B.device(f"d{i}", attrs, caps))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=exprs, devs=devices())
def test_vectorized_equals_library(expr, devs):
    inv = inventory(devs)
    sel = compile_selector(expr)
    if sel.error:                      # e.g. "1.5 < true": a static type error in the library too
        return
    assert sel.vectorized, expr
    assert sel.evaluate(inv).tolist() == library_codes(expr, inv), expr

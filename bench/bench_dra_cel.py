"""CEL for DRA selectors: which library, and what the vectorized compiler saves.

Per candidate library installed here (cel-expr-python = Google's cel-cpp, which kai uses;
common-expression-language = Rust cel bindings; cel-python = pure-Python celpy), the cost of
compiling a typical DeviceClass selector once and of evaluating it per device with the
device map kube-scheduler's environment provides. Then kai's path: the same selector
compiled to a vectorized predicate (kai.dra.selector) over 1,000 nodes x 8 devices, per
device, and the fallback through the library for a shape the compiler leaves to it
(``cel.bind``). Libraries that are not installed are reported as skipped.
Run: PYTHONPATH=.:bench python -m pytest bench/bench_dra_cel.py --benchmark-enable -p no:cacheprovider -s
"""
from __future__ import annotations

import importlib
import time

import pytest

from _sizes import size
from kai.dra.inventory import build_inventory
from kai.dra.selector import compile_selector
from kai.testing import dra as B

DOM = B.DRIVER
EXPR = f'device.driver == "{DOM}" && device.attributes["{DOM}"].model == "A100"'
N_NODES = size(1000, 20)
DEVICE = {"driver": DOM, "attributes": {DOM: {"model": "A100", "index": 3}}, "capacity": {DOM: {}}}


def _time(fn, n):
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def _cel_expr_python():
    from cel_expr_python import cel
    env = cel.NewEnv(variables={"device": cel.Type.DYN})
    prog = env.compile(EXPR)
    assert prog.eval(data={"device": DEVICE}).value() is True
    return lambda: env.compile(EXPR), lambda: prog.eval(data={"device": DEVICE})


def _common_expression_language():
    cel = importlib.import_module("cel")
    if not hasattr(cel, "compile"):
        raise ImportError("another module named cel")
    prog = cel.compile(EXPR)
    assert prog.execute({"device": DEVICE}) is True
    return lambda: cel.compile(EXPR), lambda: prog.execute({"device": DEVICE})


def _celpy():
    import celpy
    env = celpy.Environment()
    prog = env.program(env.compile(EXPR))
    dev = celpy.json_to_cel(DEVICE)
    assert bool(prog.evaluate({"device": dev})) is True
    return lambda: env.program(env.compile(EXPR)), lambda: prog.evaluate({"device": dev})


LIBRARIES = {"cel-expr-python": _cel_expr_python, "common-expression-language": _common_expression_language,
             "cel-python": _celpy}


@pytest.mark.parametrize("library", list(LIBRARIES))
def test_library_compile_and_evaluate(benchmark, library):
    try:
        compile_fn, eval_fn = LIBRARIES[library]()
    except ImportError as exc:
        pytest.skip(f"{library} not installed ({exc})")
    benchmark(eval_fn)
    eval_us = benchmark.stats.stats.mean * 1e6
    compile_us = _time(compile_fn, 20)
    benchmark.extra_info.update({"compile_us": round(compile_us, 1), "evaluate_us_per_device": round(eval_us, 2)})
    print(f"\n[{library}] compile {compile_us:.1f} us once, evaluate {eval_us:.2f} us per device")


def _inventory():
    nodes = [f"n{i}" for i in range(N_NODES)]
    return build_inventory([B.gpu_slice(n, 8, model="A100" if i % 2 else "H100") for i, n in enumerate(nodes)], nodes)


def test_vectorized_selector_per_device(benchmark):
    inv = _inventory()
    sel = compile_selector(EXPR)
    assert sel.vectorized

    def run():
        inv.selector_cache.clear()
        return sel.evaluate(inv)

    codes = benchmark(run)
    per_dev = benchmark.stats.stats.mean * 1e6 / inv.n_devices
    lib = compile_selector(f'cel.bind(a, device.attributes["{DOM}"], device.driver == "{DOM}" && a.model == "A100")')
    assert not lib.vectorized
    t = time.perf_counter()
    inv.selector_cache.clear()
    lib_codes = lib.evaluate(inv)
    lib_per_dev = (time.perf_counter() - t) * 1e6 / inv.n_devices
    assert (lib_codes == codes).all()
    benchmark.extra_info.update({"devices": inv.n_devices, "vectorized_us_per_device": round(per_dev, 4),
                                 "library_fallback_us_per_device": round(lib_per_dev, 2),
                                 "ratio": round(lib_per_dev / per_dev)})
    print(f"\n[kai] {inv.n_devices} devices: vectorized {per_dev:.4f} us/device "
          f"({benchmark.stats.stats.mean * 1e6:.0f} us total), library fallback {lib_per_dev:.2f} us/device, "
          f"ratio {lib_per_dev / per_dev:.0f}x")

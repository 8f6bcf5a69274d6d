"""Benchmark sizes: full sizes by default, small ones with KAI_BENCH_SMOKE=1 (CI runs smoke)."""
import os

SMOKE = os.environ.get("KAI_BENCH_SMOKE", "") not in ("", "0")


def size(full: int, smoke: int) -> int:
    return smoke if SMOKE else full

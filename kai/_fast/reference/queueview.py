"""Readable twin of kai._fast.queueview (same arguments, same results, plain Python).

``QueueRows`` holds the proportion plugin's per-queue rows ([gpu devices, cpu millicores,
memory bytes]; deserved -1 = unlimited): ``stats`` is a queue's view for the queue order with
a head job's init request (KAI ``queue_order.go``: over fair share in every resource,
starved within deserved with the job, zero-share penalty, dominant resource share with and
without the job), ``compare`` applies the queue order's rules 1-7 to two rows, ``charge`` adds or subtracts a
task's quota vector along a queue path, ``first_over`` finds where a request would break a
limit (or, for a non-preemptible job, a quota) along a queue path.
The tests compare it with the compiled kernel on random rows.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 1e-9
UNLIMITED = -1.0
NO_FAIR_SHARE_DRF_MULTIPLIER = 1000.0


def _le(w: float, d: float) -> bool:
    return d == UNLIMITED or (w != UNLIMITED and (w <= d or abs(w - d) <= TOLERANCE))


def _drs(values, denom) -> float:
    best = 0.0
    for a, n in zip(values, denom):
        v = a * NO_FAIR_SHARE_DRF_MULTIPLIER if n == 0 else a / n
        if v > best:
            best = v
    return best


def _cmp_quantity(a: float, b: float) -> int:
    """-1 is unlimited (largest); equal within 1e-9."""
    if a == UNLIMITED:
        return 0 if b == UNLIMITED else 1
    if b == UNLIMITED:
        return -1
    if not (a <= b or abs(a - b) <= TOLERANCE):
        return 1
    if not (b <= a or abs(a - b) <= TOLERANCE):
        return -1
    return 0


class QueueRows:
    def __init__(self, alloc, alloc_np, fair, deserved, share, denom, limit=None) -> None:
        if limit is None:
            limit = np.full(alloc.shape, UNLIMITED)
        for name, a in (("alloc", alloc), ("alloc_np", alloc_np), ("fair", fair), ("deserved", deserved),
                        ("share", share), ("denom", denom), ("limit", limit)):
            if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim != 2 or a.shape[1] != 3 \
                    or a.shape[0] != alloc.shape[0]:
                raise ValueError(f"{name}: expected float64[{alloc.shape[0]}, 3]")
        self.alloc, self.alloc_np, self.fair = alloc, alloc_np, fair
        self.deserved, self.share, self.denom, self.limit = deserved, share, denom, limit
        self.n_rows = alloc.shape[0]

    def stats(self, i: int, r0: float, r1: float, r2: float) -> tuple:
        if not 0 <= i < self.n_rows:
            raise IndexError(f"queue row {i} outside [0, {self.n_rows})")
        alloc = [float(x) for x in self.alloc[i]]
        with_job = [a + r for a, r in zip(alloc, (r0, r1, r2))]
        over = all(f < a for f, a in zip(self.fair[i].tolist(), alloc))
        starved = all(_le(w, d) for w, d in zip(with_job, self.deserved[i].tolist()))
        zero = any(s == 0 and w > 0 for s, w in zip(self.share[i].tolist(), with_job))
        denom = self.denom[i].tolist()
        return (over, starved, zero, _drs(with_job, denom), _drs(alloc, denom))

    def compare(self, li: int, ri: int, l0: float, l1: float, l2: float, r0: float, r1: float, r2: float,
                lprio: int, rprio: int) -> int:
        lover, lst, lz, ldj, ld = self.stats(li, l0, l1, l2)
        rover, rst, rz, rdj, rd = self.stats(ri, r0, r1, r2)
        if lover != rover:                       # 1. over fair share goes last
            return 1 if lover else -1
        if lst != rst:                           # 2. starved first
            return -1 if lst else 1
        if lprio != rprio:                       # 3. higher priority first
            return -1 if lprio > rprio else 1
        if lz != rz:                             # 4. zero-share penalty
            return 1 if lz else -1
        if ldj != rdj:                           # 5. DRS with the job
            return -1 if ldj < rdj else 1
        if ld != rd:                             # 6. DRS as is
            return -1 if ld < rd else 1
        ls, rs = self.share[li].tolist(), self.share[ri].tolist()
        if ls != rs:                             # 7. the weaker queue first
            l_le = all(_cmp_quantity(a, b) <= 0 for a, b in zip(ls, rs))
            r_le = all(_cmp_quantity(b, a) <= 0 for a, b in zip(ls, rs))
            if l_le and not r_le:
                return -1
            if r_le and not l_le:
                return 1
        return 0

    def charge(self, rows, v0: float, v1: float, v2: float, sign: float, nonpreemptible: bool) -> None:
        rows = list(rows)
        for r in rows:
            if not 0 <= r < self.n_rows:
                raise IndexError(f"queue row {r} outside [0, {self.n_rows})")
        targets = [self.alloc] + ([self.alloc_np] if nonpreemptible else [])
        for r in rows:
            for a in targets:
                for c, v in enumerate((v0, v1, v2)):
                    a[r, c] = a[r, c] + v if sign > 0 else a[r, c] - v

    def first_over(self, rows, r0: float, r1: float, r2: float, nonpreemptible: bool) -> int:
        rows = list(rows)
        for r in rows:
            if not 0 <= r < self.n_rows:
                raise IndexError(f"queue row {r} outside [0, {self.n_rows})")
        req = (r0, r1, r2)
        checks = [(0, self.alloc, self.limit)] + ([(1, self.alloc_np, self.deserved)] if nonpreemptible else [])
        for k, r in enumerate(rows):
            for kind, used, bounds in checks:
                for c in range(3):
                    bound = float(bounds[r, c])
                    if req[c] > 0 and bound != UNLIMITED and float(used[r, c]) + req[c] > bound + TOLERANCE:
                        return 6 * k + 3 * kind + c
        return -1

"""Readable twin of kai._fast.domains (same constructor, same results, plain Python)."""
from __future__ import annotations

import math

KIND_ANTI, KIND_AFFINITY, KIND_SPREAD, KIND_SCORE, KIND_SPREAD_SCORE = range(5)


class DomainConstraints:
    """See kai._fast.domains.DomainConstraints (and domains.pxd for the semantics). The twin
    never offers the node-queue shortcut (``anti_only`` False): it is the full-scan baseline."""

    anti_only = False
    has_scores = True

    def __init__(self, n_nodes, constraints, bootstrap=False):
        self.n_nodes = n_nodes
        self.n_c = len(constraints)
        self.bootstrap = bootstrap
        self.cs = []
        for s in constraints:
            d = [int(x) for x in s["dom"]]
            cnt = [float(x) for x in s["counts"]]
            self.cs.append(dict(
                dom=d, counts=cnt, kind=int(s["kind"]), self_inc=bool(s.get("self_inc")),
                weight=float(s.get("weight", 0.0)), max_skew=int(s.get("max_skew", 1)),
                min_domains=int(s.get("min_domains", 1)),
                elig=[int(x) for x in s["elig"]] if s.get("elig") is not None else [1] * n_nodes,
                dom_elig=[int(x) for x in s["dom_elig"]] if s.get("dom_elig") is not None else [1] * len(cnt),
                releasing=[float(x) for x in s["releasing"]] if s.get("releasing") is not None else [0.0] * len(cnt),
                arriving=[float(x) for x in s["arriving"]] if s.get("arriving") is not None else [0.0] * len(cnt)))

    @property
    def counts_array(self):
        return [x for c in self.cs for x in c["counts"]]

    @staticmethod
    def _min_eligible(c, with_releasing=False):
        vals = [v + (r if with_releasing else 0.0) for v, r, e in zip(c["counts"], c["releasing"], c["dom_elig"]) if e]
        if not vals or len(vals) < c["min_domains"]:
            return 0.0
        return min(vals)

    def filter_and_score(self, base, out_score, wait=None):
        n_nodes = self.n_nodes
        mask = [1 if base[n] else 0 for n in range(n_nodes)]
        waits = [0] * n_nodes
        affs = [c for c in self.cs if c["kind"] == KIND_AFFINITY]
        boot = bool(affs) and sum(sum(c["counts"]) for c in affs) <= 0 and self.bootstrap
        boot_strict = boot and sum(sum(c["releasing"]) for c in affs) <= 0
        for c in self.cs:
            k = c["kind"]
            for n in range(n_nodes):
                d = c["dom"][n]
                if k == KIND_ANTI and d >= 0 and c["counts"][d] > 0:
                    mask[n] = 0
                elif k == KIND_ANTI and d >= 0 and c["releasing"][d] > 0:
                    waits[n] = 1
                elif k == KIND_AFFINITY and (d < 0 or (not boot and c["counts"][d] <= 0)):
                    mask[n] = 0
                elif k == KIND_AFFINITY and ((c["counts"][d] <= 0 and not boot_strict) or
                                             (c["counts"][d] > 0 and c["counts"][d] - c["arriving"][d] <= 0)):
                    waits[n] = 1
                elif k == KIND_SPREAD:
                    if d < 0 or c["counts"][d] + c["self_inc"] - self._min_eligible(c) > c["max_skew"]:
                        mask[n] = 0
                    elif c["counts"][d] + c["releasing"][d] + c["self_inc"] - self._min_eligible(c, True) > \
                            c["max_skew"]:
                        waits[n] = 1
        for c in self.cs:
            if c["kind"] == KIND_SCORE:
                for n in range(n_nodes):
                    d = c["dom"][n]
                    if d >= 0 and mask[n]:
                        out_score[n] += c["weight"] * c["counts"][d]
        soft = [c for c in self.cs if c["kind"] == KIND_SPREAD_SCORE]
        if soft:
            raw = {}
            for n in range(n_nodes):
                if not mask[n]:
                    continue
                if any(c["dom"][n] < 0 for c in soft):
                    continue                                  # ignored node: scores 0
                total = 0.0
                for c in soft:
                    size = len({c["dom"][m] for m in range(n_nodes) if mask[m] and c["dom"][m] >= 0})
                    total += c["counts"][c["dom"][n]] * math.log(size + 2) + (c["max_skew"] - 1)
                raw[n] = math.floor(total + 0.5)
            w = max(c["weight"] for c in soft)
            if raw:
                lo, hi = min(raw.values()), max(max(raw.values()), 0.0)
                for n, x in raw.items():
                    out_score[n] += w * (100.0 if hi == 0 else math.floor(100.0 * (hi + lo - x) / hi))
        if wait is not None:
            for n in range(n_nodes):
                wait[n] = waits[n] if base[n] else 0
        return mask

    def place_at(self, node):
        for c in self.cs:
            if not c["self_inc"]:
                continue
            d = c["dom"][node]
            if d < 0:
                continue
            if c["kind"] in (KIND_SPREAD, KIND_SPREAD_SCORE) and not c["elig"][node]:
                continue
            c["counts"][d] += 1.0

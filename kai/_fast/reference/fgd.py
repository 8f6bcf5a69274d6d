"""Readable twin of kai._fast.fgd: expected GPU fragmentation of nodes, before and after a
candidate placement (Weng et al., "Beware of Fragmentation", USENIX ATC'23).

Definitions (GPU amounts in devices; a device's free part is a fraction in [0, 1]):

* For one task type m and one node, the *fragment* is the free GPU of the node that m
  cannot use:
  - m needs no GPU, or the node is closed to m (GPU model not allowed, free CPU or memory
    below m's request), or fewer than ``ndev(m)`` devices have ``free >= g(m)``:
    every free GPU part of the node;
  - otherwise: the free parts of the devices with ``free < g(m)`` (for a fractional m, the
    slices too small for it; for a whole-GPU m, the free parts of partially used devices).
* A node's *expected fragmentation* is ``sum_m weight(m) * fragment(m)``.
* Placing a task changes the node; ``delta = F(after) - F(before)``. FGD places the task
  where ``delta`` is smallest. A fractional task may go to any device with room: the
  kernel picks the device giving the smallest ``F(after)`` (ties: the device with the least
  free part, then the lowest index). A task asking for ``ndev`` whole devices takes
  fully free ones (which of them does not change F).
"""
from __future__ import annotations

import math

EPS = 1e-9
TIE = 1e-9


def _node_f(cpu, mem, dev, model_bit, types) -> float:
    """F of one node: ``dev`` = free part per device; ``types`` = (cpu, mem, g, ndev, models, weight)."""
    total = sum(dev)
    out = 0.0
    for t_cpu, t_mem, g, ndev, models, w in types:
        if ndev == 0 or g <= 0:
            frag = total
        elif not (models & model_bit) or cpu < t_cpu - EPS or mem < t_mem - EPS:
            frag = total
        else:
            fits = sum(1 for f in dev if f >= g - EPS)
            frag = sum(f for f in dev if f < g - EPS) if fits >= ndev else total
        out += w * frag
    return out


def _types(g_values, t_cpu, t_mem, t_g, t_ndev, t_models, t_weight):
    out = []
    for k in range(len(t_weight)):
        g = g_values[t_g[k]] if t_g[k] >= 0 else 0.0
        out.append((t_cpu[k], t_mem[k], g, t_ndev[k] if t_g[k] >= 0 else 0, int(t_models[k]), t_weight[k]))
    return out


def node_fragmentation(cpu_free, mem_free, dev_free, node_model, g_values, t_cpu, t_mem, t_g, t_ndev,
                       t_models, t_weight, out) -> None:
    """Same contract as ``kai._fast.fgd.node_fragmentation``."""
    types = _types(g_values, t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
    for n in range(len(cpu_free)):
        out[n] = _node_f(cpu_free[n], mem_free[n], [float(x) for x in dev_free[n]], int(node_model[n]), types)


def frag_delta(cpu_free, mem_free, dev_free, node_model, mask, g_values,
               t_cpu, t_mem, t_g, t_ndev, t_models, t_weight,
               cpu, mem, gpu, ndev, models, out_delta, out_device, cache=None) -> int:
    """Same contract as ``kai._fast.fgd.frag_delta``; returns the number of feasible nodes.
    ``cache`` is accepted and ignored (it only saves work)."""
    types = _types(g_values, t_cpu, t_mem, t_g, t_ndev, t_models, t_weight)
    n_nodes = len(mask)
    feasible = 0
    for n in range(n_nodes):
        out_delta[n] = math.inf
        out_device[n] = -1
        if not mask[n]:
            continue
        bit = int(node_model[n])
        if cpu_free[n] < cpu - EPS or mem_free[n] < mem - EPS:
            continue
        dev = [float(x) for x in dev_free[n]]
        if ndev > 0 and gpu > 0 and not (int(models) & bit):
            continue
        before = _node_f(cpu_free[n], mem_free[n], dev, bit, types)
        c2, m2 = cpu_free[n] - cpu, mem_free[n] - mem
        if ndev == 0 or gpu <= 0:
            out_delta[n] = _node_f(c2, m2, dev, bit, types) - before
        elif gpu < 1.0 - EPS:                      # fractional: try each device with room
            best, best_free, best_dev = math.inf, math.inf, -1
            for d, f in enumerate(dev):
                if f < gpu - EPS:
                    continue
                after_dev = list(dev)
                after_dev[d] = f - gpu
                a = _node_f(c2, m2, after_dev, bit, types)
                if a < best - TIE or (abs(a - best) <= TIE and f < best_free - EPS):
                    best, best_free, best_dev = a, f, d
            if best_dev < 0:
                continue
            out_delta[n] = best - before
            out_device[n] = best_dev
        else:                                      # whole devices: fully free ones
            free_idx = [d for d, f in enumerate(dev) if f >= 1.0 - EPS]
            if len(free_idx) < ndev:
                continue
            after_dev = list(dev)
            for d in free_idx[:ndev]:
                after_dev[d] = 0.0
            out_delta[n] = _node_f(c2, m2, after_dev, bit, types) - before
        feasible += 1
    return feasible


class FragCache:
    """Accepted for signature parity with the kernel; the reference recomputes everything."""

    def __init__(self, n_nodes: int = 0, n_dev: int = 0) -> None:
        self.reset(n_nodes, n_dev)

    def reset(self, n_nodes: int, n_dev: int) -> None:
        pass


def device_view(idle_gpu, dev_used, dev_alloc, dev_rel, out) -> None:
    """See kai._fast.fgd.device_view."""
    n_dev = len(dev_used[0]) if len(dev_used) else 0
    for n in range(len(out)):
        whole = int(idle_gpu[n] + EPS) if idle_gpu[n] > 0 else 0
        for d in range(len(out[n])):
            f = 0.0
            if d < n_dev and dev_used[n][d] > EPS:
                used, alloc, rel = dev_used[n][d], dev_alloc[n][d], dev_rel[n][d]
                if alloc > EPS and abs(alloc - rel) > EPS:
                    f = max(0.0, 1.0 - max(alloc, used))
            elif whole > 0:
                f = 1.0
                whole -= 1
            out[n][d] = f


def band_scores(delta, dev_free, band, tie, out) -> int:
    """See kai._fast.fgd.band_scores."""
    finite = [x for x in delta if x < math.inf]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    for n, x in enumerate(delta):
        if x < math.inf:
            base = band if hi - lo <= EPS else band * (1.0 - (x - lo) / (hi - lo))
            out[n] = base - tie * sum(dev_free[n])
        else:
            out[n] = 0.0
    return len(finite)

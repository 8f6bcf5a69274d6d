"""fgd: Fragmentation Gradient Descent GPU placement (Weng et al., USENIX ATC'23), beyond KAI.

Selected as a placement strategy of the ``nodeplacement`` plugin, next to KAI's two::

    - name: nodeplacement
      arguments: {gpu: fgd, cpu: fgd}      # cpu: binpack|spread|fgd, gpu: binpack|spread|fgd

Optional arguments: ``fgdCoverage`` (default 1.0: every task type seen; e.g. 0.95 keeps the
most popular types covering 95% of the pods), ``fgdDecay`` (default 0: the distribution is
the session's pending + running pods; 0 < d < 1 blends in the previous cycles' histogram,
old weight times d, kept per scheduler config).

For each task the strategy scores every candidate node by the growth of the node's expected
fragmentation (``kai._fast.fgd.frag_delta``, one call per decision): the task types are the
distinct (CPU, memory, GPU per device, devices, allowed GPU models) of the pods the session
sees, weighted by their share; the smallest growth wins. Scores live in the nodeplacement
band (0..9, KAI's pack formula applied to ``-delta``), so availability (100) and resource
type (10) still come first. The placement kernel always adds its spread term under fgd;
the node order function subtracts it, so the band holds the FGD score alone.

Per-device state: GPU-sharing groups come from the session's per-device arrays when the
gpusharing plugin provides them (``ssn.dev_used``: portion used per device slot); whole
idle devices are the node's idle GPU count. Without GPU sharing every device is either
fully free or taken. :meth:`FGD.fraction_choice` gives a fractional task's per-node delta and
device (existing group slot, or -1 for a new group on an idle device) for the shared-GPU
allocator.
"""
from __future__ import annotations

import math

import numpy as np

from kai._fast import fgd as _fgd
from kai.api import constants as C
from kai.api.resources import CPU, GPU, MEMORY

ANY_MODEL = np.uint64(2**64 - 1)
MODEL_LABEL = "nvidia.com/gpu.product"
BAND = 9.0
EPS = 1e-9

#: decayed histograms across cycles, per scheduler config (id) -> {type key: weight}
_HISTORY: dict[int, dict[tuple, float]] = {}


def _task_shape(task) -> tuple[float, int] | None:
    """(GPU per device, devices) of a task; (0, 0) = no GPU; None = not expressible
    (a gpu-memory request or a multi-device fraction)."""
    gs = task.gpu_sharing
    if gs is not None:
        if not gs.portion or gs.num_devices != 1:
            return None
        return float(gs.portion), 1
    g = float(task.req[GPU])
    if g <= 0:
        return 0.0, 0
    return 1.0, int(math.ceil(g - EPS))


class FGD:
    """One session's FGD scorer. Built by nodeplacement when ``gpu`` or ``cpu`` is ``fgd``."""

    def __init__(self, ssn, kinds: set[str], arguments: dict | None = None) -> None:
        args = arguments or {}
        self.ssn = ssn
        self.kinds = kinds
        self.coverage = float(args.get("fgdCoverage", 1.0))
        self.decay = float(args.get("fgdDecay", 0.0))
        self._model_bits()
        self._build_types()
        self._out_delta = np.empty(self.n_nodes)
        self._out_dev = np.empty(self.n_nodes, dtype=np.int32)
        self.calls = 0

    # ------------------------------------------------------------------ session setup
    def _model_bits(self) -> None:
        infos = self.ssn.node_infos
        self.n_nodes = len(infos)
        bits: dict[str, int] = {}
        node_model = np.zeros(self.n_nodes, dtype=np.uint64)
        for i, info in enumerate(infos):
            if info is None:
                continue
            model = info.labels.get(MODEL_LABEL, "")
            b = bits.setdefault(model, len(bits))
            node_model[i] = np.uint64(1) << np.uint64(b % 64)
        self.node_model = node_model
        self._models_cache: dict[tuple, np.uint64] = {}

    def task_models(self, task) -> np.uint64:
        """Allowed model bits of a task: the models of the nodes its static predicates allow."""
        key = task.signature
        got = self._models_cache.get(key)
        if got is None:
            m = self.ssn.state.nodes.static_mask(task.pod, task.signature)
            got = np.bitwise_or.reduce(self.node_model[m.astype(bool)]) if m.any() else np.uint64(0)
            self._models_cache[key] = got
        return got

    def type_key(self, task) -> tuple | None:
        shape = _task_shape(task)
        if shape is None:
            return None
        g, ndev = shape
        return (float(task.req[CPU]), float(task.req[MEMORY]), g, ndev, int(self.task_models(task)))

    def _build_types(self) -> None:
        hist: dict[tuple, float] = {}
        for job in self.ssn.jobs.values():
            for t in job.tasks.values():
                if not t.status & C.ALIVE:
                    continue
                key = self.type_key(t)
                if key is not None:
                    hist[key] = hist.get(key, 0.0) + 1.0
        total = sum(hist.values())
        if total > 0:
            hist = {k: v / total for k, v in hist.items()}
        if self.decay > 0:
            past = _HISTORY.get(id(self.ssn.config), {})
            merged = {k: (1 - self.decay) * v for k, v in hist.items()}
            for k, v in past.items():
                merged[k] = merged.get(k, 0.0) + self.decay * v
            hist = merged
            _HISTORY[id(self.ssn.config)] = dict(hist)
        self.set_types(hist)

    def set_types(self, hist: dict[tuple, float]) -> None:
        """Use ``hist`` ({(cpu, mem, g, ndev, models): weight}) as the workload distribution."""
        items = sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))
        if self.coverage < 1.0 and items:
            total, acc, keep = sum(v for _, v in items), 0.0, []
            for k, v in items:
                keep.append((k, v))
                acc += v
                if acc >= self.coverage * total - EPS:
                    break
            items = keep
        wsum = sum(v for _, v in items) or 1.0
        gs = sorted({k[2] for k, _ in items if k[2] > 0}) or [1.0]
        gi = {g: i for i, g in enumerate(gs)}
        self.g_values = np.array(gs, dtype=np.float64)
        self.t_cpu = np.array([k[0] for k, _ in items], dtype=np.float64)
        self.t_mem = np.array([k[1] for k, _ in items], dtype=np.float64)
        self.t_g = np.array([gi[k[2]] if k[2] > 0 else -1 for k, _ in items], dtype=np.int32)
        self.t_ndev = np.array([k[3] for k, _ in items], dtype=np.int32)
        self.t_models = np.array([k[4] for k, _ in items], dtype=np.uint64)
        self.t_weight = np.array([v / wsum for _, v in items], dtype=np.float64)

    # ------------------------------------------------------------------ per decision
    def device_free(self) -> tuple[np.ndarray, int]:
        """(free part per device slot float64[N, W], number of group slots D). Slots < D are
        GPU-sharing groups (free = 1 - used), slots >= D fully idle devices."""
        ssn = self.ssn
        idle_whole = np.floor(np.maximum(ssn.idle[GPU], 0.0) + EPS)
        used = getattr(ssn, "dev_used", None)
        d = 0 if used is None else used.shape[1]
        width = max(int(idle_whole.max(initial=0)), 1)
        out = np.zeros((self.n_nodes, d + width))
        if d:
            out[:, :d] = np.where(used > EPS, 1.0 - used, 0.0)
        out[:, d:] = (np.arange(width)[None, :] < idle_whole[:, None])
        return np.ascontiguousarray(out), d

    def deltas(self, task, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(delta float64[N] (+inf = does not fit), device int32[N], group slots D) or None."""
        shape = _task_shape(task)
        if shape is None:
            return None
        g, ndev = shape
        dev, d = self.device_free()
        ssn = self.ssn
        self.calls += 1
        _fgd.frag_delta(ssn.idle[CPU], ssn.idle[MEMORY], dev, self.node_model, mask, self.g_values,
                        self.t_cpu, self.t_mem, self.t_g, self.t_ndev, self.t_models, self.t_weight,
                        float(task.req[CPU]), float(task.req[MEMORY]), g, ndev, self.task_models(task),
                        self._out_delta, self._out_dev)
        return self._out_delta, self._out_dev, d

    def scores(self, delta: np.ndarray) -> np.ndarray:
        """Band scores: 9 for the smallest delta, 0 for the largest (KAI's pack formula on -delta)."""
        ok = np.isfinite(delta)
        out = np.zeros(delta.shape[0])
        if not ok.any():
            return out
        lo, hi = delta[ok].min(), delta[ok].max()
        out[ok] = BAND if hi - lo <= EPS else BAND * (1.0 - (delta[ok] - lo) / (hi - lo))
        return out

    def node_order(self, task, job, mask) -> np.ndarray | None:
        """NodeOrder callback: FGD scores minus the placement kernel's spread term."""
        kind = "cpu" if task.is_cpu_only else "gpu"
        if kind not in self.kinds or task.gpu_sharing is not None:
            return None
        got = self.deltas(task, mask)
        if got is None:
            return None
        ssn = self.ssn
        col = CPU if kind == "cpu" else GPU
        cap = ssn.gpu_capacity if col == GPU else ssn.allocatable[CPU]
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(cap > 0, ssn.avail[col] / np.where(cap > 0, cap, 1.0), 0.0)
        return self.scores(got[0]) - spread

    def fraction_choice(self, task, job, mask) -> tuple[np.ndarray, np.ndarray] | None:
        """For the shared-GPU allocator: (band scores float64[N], device int32[N]) for a
        fractional task; device >= 0 is an existing group slot, -1 a new group on an idle
        device, and the score is 0 where the task does not fit."""
        got = self.deltas(task, mask)
        if got is None:
            return None
        delta, dev, d = got
        device = np.where(dev >= d, -1, dev).astype(np.int32)
        return self.scores(delta), device


def attach(ssn, kinds: set[str], arguments: dict | None = None) -> FGD:
    """Build the session's FGD scorer and register its NodeOrder callback."""
    scorer = FGD(ssn, kinds, arguments)
    ssn.fgd = scorer
    ssn.node_order_fns.append(scorer.node_order)
    return scorer

"""fgd: Fragmentation Gradient Descent GPU placement (Weng et al., USENIX ATC'23), beyond KAI.

Selected as a placement strategy of the ``nodeplacement`` plugin, next to KAI's two::

    - name: nodeplacement
      arguments: {gpu: fgd, cpu: fgd}      # cpu: binpack|spread|fgd, gpu: binpack|spread|fgd

Optional arguments: ``fgdCoverage`` (default 1.0: every task type seen; e.g. 0.95 keeps the
most popular types covering 95% of the pods), ``fgdDecay`` (default 0: the distribution is
the session's pending + running pods; 0 < d < 1 blends in the previous cycles' histogram,
old weight times d, kept per scheduler config), ``fgdMix`` (which pods make the
distribution: ``session``, the default, counts every pending and running pod of the
session, so a replay that submits a whole trace at once shows the policy the whole trace's
mix, as the FGD paper does; ``arrived`` counts only the pods created no later than the
newest pod placed so far, the one being placed included, i.e. what has arrived so far:
the mix grows at every decision whose pod is newer than all before it, never shrinks;
``fgdDecay`` applies to ``session`` only).

For each task the strategy scores every candidate node by the growth of the node's expected
fragmentation (``kai._fast.fgd.frag_delta``, one call per decision): the task types are the
distinct (CPU, memory, GPU per device, devices, allowed GPU models) of the pods the session
sees, weighted by their share; the smallest growth wins. Scores live in the nodeplacement
band (0..9, KAI's pack formula applied to ``-delta``), so availability (100) and resource
type (10) still come first. The placement kernel always adds its spread term under fgd;
the node order function subtracts it, so the band holds the FGD score alone.

Among nodes with the same growth the one with the least free GPU wins (a best-fit tie
break, ``TIE_BREAK`` per free device, far below any real difference).

Per-device state is the session's (kai.cache.node_table / kai.plugins.gpusharing): shared
groups are device slots with ``dev_used > 0`` (free part ``1 - dev_alloc``), whole idle
devices are the node's idle GPU column. Fraction pods (``gpu-fraction``, one device) are
placed by :meth:`FGD.allocate_shared`, installed as ``ssn.shared_gpu_allocator``: FGD picks
node and device (an existing group or a new one on an idle device) among nodes where the
fraction fits on idle resources, adds the other plugins' node scores, and records the
placement with ``Statement.allocate_shared``; anything else (gpu-memory and multi-device
fractions, fits only on releasing resources) goes to KAI's allocator
(``kai.plugins.gpusharing.allocate_shared``). Plugins that install the shared allocator
(gpupack, gpuspread, gpusharingorder) must come before nodeplacement in the config for
FGD to own the fraction placements; if one comes after, fractions still get FGD's node
scores but KAI's device order (and gpusharingorder's +1000 for existing groups).
"""
from __future__ import annotations

import math
import time

import numpy as np

from kai._fast import fgd as _fgd
from kai.api import constants as C
from kai.api.resources import CPU, GPU, MEMORY
from kai.plugins import gpusharing

ANY_MODEL = np.uint64(2**64 - 1)
MODEL_LABEL = "nvidia.com/gpu.product"
BAND = 9.0
EPS = 1e-9
TIE_BREAK = 1e-6

#: fgdMix values: the whole session's pods, or those arrived (created) up to the decision
MIXES = ("session", "arrived")


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
        self.mix = str(args.get("fgdMix", "session"))
        if self.mix not in MIXES:
            raise ValueError(f"nodeplacement argument fgdMix={self.mix!r}: expected one of {', '.join(MIXES)}")
        self._model_bits()
        self._build_types()
        self._out_delta = np.empty(self.n_nodes)
        self._out_dev = np.empty(self.n_nodes, dtype=np.int32)
        self._dev: np.ndarray | None = None
        self._out_score = np.empty(self.n_nodes)
        with np.errstate(divide="ignore"):
            self._inv_cap = {GPU: np.where(ssn.gpu_capacity > 0, 1.0 / ssn.gpu_capacity, 0.0),
                             CPU: np.where(ssn.allocatable[CPU] > 0, 1.0 / ssn.allocatable[CPU], 0.0)}
        self._width = max(ssn.dev_used.shape[1],
                          int(np.floor(ssn.allocatable[GPU].max(initial=0) + EPS)), 1)
        self.calls = 0          # decisions scored
        self.seconds = 0.0      # time spent scoring them (device view, kernel, band scores)

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
        timeline: list[tuple[float, tuple]] = []
        for job in self.ssn.jobs.values():
            for t in job.tasks.values():
                if not t.status & C.ALIVE:
                    continue
                key = self.type_key(t)
                if key is not None:
                    hist[key] = hist.get(key, 0.0) + 1.0
                    timeline.append((t.creation, key))
        if self.mix == "arrived":
            # the types in creation order; deltas() counts them up to each decision's pod
            timeline.sort(key=lambda ck: ck[0])
            self._timeline = timeline
            self._arrived: dict[tuple, float] = {}
            self._seen = 0                      # timeline entries counted so far
            self._cutoff = float("-inf")        # creation time they are counted up to
            self.set_types({})
            return
        total = sum(hist.values())
        if total > 0:
            hist = {k: v / total for k, v in hist.items()}
        if self.decay > 0:
            memory = self.ssn.memory          # kept by the Scheduler from one cycle to the next
            past = memory.fgd_history
            merged = {k: (1 - self.decay) * v for k, v in hist.items()}
            for k, v in past.items():
                merged[k] = merged.get(k, 0.0) + self.decay * v
            hist = merged
            if not self.ssn.is_warm:            # a history of cycles: a warm-up is none
                memory.fgd_history = dict(hist)
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
        self._caches: dict[tuple, _fgd.FragCache] = {}     # per task class, for these types

    # ------------------------------------------------------------------ per decision
    def device_free(self) -> np.ndarray:
        """Free part of every device slot, float64[N, W] (``kai._fast.fgd.device_view``): a
        shared group (``dev_used > 0``, usable without waiting) has ``1 - allocated portion``;
        the node's whole idle devices fill its empty slots with 1.0. A slot index is the group
        slot of the session's per-device arrays, so an empty slot chosen for a fraction means
        a new group on an idle device. Refreshed once per decision."""
        ssn = self.ssn
        idle = ssn.idle[GPU]
        used, alloc, rel = ssn.dev_used, ssn.dev_alloc, ssn.dev_rel
        width = max(self._width, used.shape[1])
        if self._dev is None or self._dev.shape[1] != width:
            self._dev = np.zeros((self.n_nodes, width))
        _fgd.device_view(idle, used, alloc, rel, self._dev)
        return self._dev

    def _advance(self, task) -> None:
        """``fgdMix: arrived``: count the pods created no later than ``task`` (the task
        itself included) and, when that adds any, use the new mix (answers cached for the
        old one are dropped by set_types)."""
        created = task.creation
        if created <= self._cutoff:
            return
        self._cutoff = created
        timeline, seen, arrived = self._timeline, self._seen, self._arrived
        while seen < len(timeline) and timeline[seen][0] <= created:
            key = timeline[seen][1]
            arrived[key] = arrived.get(key, 0.0) + 1.0
            seen += 1
        if seen != self._seen:
            self._seen = seen
            total = float(seen)
            self.set_types({k: v / total for k, v in arrived.items()})

    def deltas(self, task, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(delta float64[N] (+inf = does not fit), device slot int32[N]) or None."""
        shape = _task_shape(task)
        if shape is None:
            return None
        g, ndev = shape
        if self.mix == "arrived":
            self._advance(task)
        dev = self.device_free()
        ssn = self.ssn
        self.calls += 1
        cpu, mem, models = float(task.req[CPU]), float(task.req[MEMORY]), self.task_models(task)
        key = (cpu, mem, g, ndev, int(models))
        cache = self._caches.get(key)
        if cache is None:
            if len(self._caches) >= 512:
                self._caches.pop(next(iter(self._caches)))
            cache = self._caches[key] = _fgd.FragCache()
        _fgd.frag_delta(ssn.idle[CPU], ssn.idle[MEMORY], dev, self.node_model, mask, self.g_values,
                        self.t_cpu, self.t_mem, self.t_g, self.t_ndev, self.t_models, self.t_weight,
                        cpu, mem, g, ndev, models, self._out_delta, self._out_dev, cache)
        return self._out_delta, self._out_dev

    def scores(self, delta: np.ndarray) -> np.ndarray:
        """Band scores: 9 for the smallest delta, 0 for the largest (KAI's pack formula on
        -delta), minus the best-fit tie break; 0 where the task does not fit."""
        _fgd.band_scores(delta, self._dev, BAND, TIE_BREAK, self._out_score)
        return self._out_score

    def _placement_term(self, col: int, shared: bool) -> np.ndarray:
        """The spread score the placement kernels add under fgd (taken back out)."""
        ssn = self.ssn
        free = ssn.avail[col]
        if shared and ssn.dev_used.shape[1]:
            free = free + np.where(ssn.dev_used > EPS,
                                   np.maximum(0.0, 1.0 - ssn.dev_alloc + ssn.dev_rel), 0.0).sum(axis=1)
        return free * self._inv_cap[col]

    def node_order(self, task, job, mask) -> np.ndarray | None:
        """NodeOrder callback: FGD band scores minus the placement kernel's spread term.

        Fraction pods get scores here only when KAI's shared allocator places them (see the
        module docstring); FGD's own allocator computes them itself."""
        kind = "cpu" if task.is_cpu_only else "gpu"
        if kind not in self.kinds or self._own_call:
            return None
        start = time.perf_counter()
        got = self.deltas(task, mask)
        if got is None:
            return None
        shared = task.gpu_sharing is not None
        out = self.scores(got[0]) - self._placement_term(CPU if kind == "cpu" else GPU, shared)   # a new array
        self.seconds += time.perf_counter() - start
        return out

    _own_call = False

    def allocate_shared(self, ssn, stmt, task, job, allow_pipeline: bool = True) -> tuple[bool, str]:
        """Shared-GPU allocator: FGD's node and device for a one-device fraction that fits on
        idle resources; everything else goes to KAI's allocator."""
        gs = task.gpu_sharing
        if "gpu" in self.kinds and gs is not None and gs.portion and gs.num_devices == 1 \
                and not ssn.predicates_for(task):      # pod constraints: KAI's allocator honours them
            mask = ssn.node_mask(task, job)
            mask = np.ascontiguousarray(mask & (gpusharing.task_portions(ssn, gs) > 0))
            start = time.perf_counter()
            got = self.deltas(task, mask)
            self.seconds += time.perf_counter() - start
            if got is not None and np.isfinite(got[0]).any():
                delta, dev = got
                ok = np.isfinite(delta)
                self._own_call = True
                try:
                    extra = ssn.node_scores(task, job, mask)
                finally:
                    self._own_call = False
                start = time.perf_counter()
                total = self.scores(delta).copy()
                if extra is not None:
                    total = total + extra
                total = np.where(ok, total, -np.inf)
                top = total.max()
                ties = np.flatnonzero(total >= top)
                node = int(ties[np.argmin(ssn.name_rank[ties])]) if len(ties) > 1 else int(ties[0])
                self.seconds += time.perf_counter() - start
                slot = int(dev[node])
                code = slot if slot < ssn.dev_used.shape[1] and ssn.dev_used[node, slot] > EPS else -1
                stmt.allocate_shared(task, node, np.array([code], dtype=np.int32), float(gs.portion), False)
                return True, ""
        return self.fallback(ssn, stmt, task, job, allow_pipeline)


def attach(ssn, kinds: set[str], arguments: dict | None = None) -> FGD:
    """Build the session's FGD scorer, register its NodeOrder callback and, for GPU tasks,
    install it as the shared-GPU allocator (KAI's allocator kept as the fallback)."""
    scorer = FGD(ssn, kinds, arguments)
    ssn.node_order_fns.append(scorer.node_order)
    if "gpu" in kinds:
        scorer.fallback = ssn.shared_gpu_allocator or gpusharing.allocate_shared
        ssn.shared_gpu_allocator = scorer.allocate_shared
    return scorer

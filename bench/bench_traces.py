"""Replay of the Alibaba GPU traces (openb, ATC'23): binpack vs spread vs fgd.

Arrival-only: pods arrive one by one (the trace drawn with replacement until the GPU demand
reaches 130% of the cluster's GPUs, seeded), nothing departs, a pod that fits nowhere stays
pending and changes nothing. After each arrival we record the GPU allocation ratio
(allocated GPU / total GPU) against the arrived GPU demand (% of capacity).

The trace: the openb CSV files in the folder named by ``--trace-dir`` or ``$KAI_TRACE_DIR``
(the trace is not in this repository; scripts/test.sh sets the variable when it finds a
copy). Without either, a synthetic openb-like trace (kai.sim.synthetic.openb_like: the
same GPU node types and request distributions) is used and every output line says so.

What FGD sees: its task mix (the workload distribution of the paper). Policy ``fgd`` is
given the mix of the whole arrival sequence, as in the paper's simulator (in the engine
every arrival is a pending pod of the one session); ``fgd-arrived`` (``fgdMix: arrived``)
learns it from the pods arrived so far, the one being placed included.

Two replays of the same arrivals (they agree placement for placement; see
tests/plugins/test_fgd_plugin.py):

* ``model``: the placement decisions over per-device arrays (free CPU, memory, and free part
  of every GPU): KAI's binpack / spread node scores (with gpupack / gpuspread device choice
  for fractions) and fgd through ``kai._fast.fgd.frag_delta``, exactly one decision per pod.
  It covers fractional pods whatever the engine supports, and gives the decision time.
* ``engine``: the scheduler itself, one allocate cycle over a single open queue (jobs in
  creation order = arrival order) with ``nodeplacement`` ``gpu/cpu = binpack|spread|fgd``.
  Fractional pods need the GPU-sharing plugin; without it they stay pending (reported).

CLI (``--mode engine`` is the default; ``--mode model`` is the fast array replay)::

    KAI_TRACE_DIR=/path/to/gpu-v2023 python bench/bench_traces.py --trace default --seeds 3
    python bench/bench_traces.py --trace-dir /path/to/gpu-v2023 \
        --trace default,gpushare100,multigpu50,gpuspec33 --seeds 3 --plot docs/fgd.png

pytest (``KAI_BENCH_SMOKE=1``: 1 node in 20 and its share of pods, seconds)::

    pytest bench/bench_traces.py --benchmark-enable -p no:cacheprovider
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _sizes import SMOKE  # noqa: E402
from kai._fast import fgd as _fgd  # noqa: E402
from kai.sim import traces as T  # noqa: E402

POLICIES = ("binpack", "spread", "fgd", "fgd-arrived")
EPS = 1e-9
ALL_MODELS = np.uint64(2**64 - 1)
MAX_DEV = 8
TIE_BREAK = 1e-6        # the plugin's secondary key (kai.plugins.fgd.TIE_BREAK)


@dataclass
class Curve:
    policy: str
    demand: np.ndarray          # arrived GPU demand after each arrival, fraction of capacity
    alloc: np.ndarray           # allocated GPU after each arrival, fraction of capacity
    decision_s: float           # mean time per pod decision (seconds)
    placed: int
    pods: int
    notes: list[str] = field(default_factory=list)

    def at(self, demand: float) -> float:
        """Allocation ratio when the arrived demand first reaches ``demand``."""
        i = int(np.searchsorted(self.demand, demand - 1e-12))
        return float(self.alloc[min(i, len(self.alloc) - 1)])

    @property
    def final(self) -> float:
        return float(self.alloc[-1])


# ---------------------------------------------------------------------- workload
def model_bits(nodes: T.TraceNodes) -> tuple[np.ndarray, dict[str, int]]:
    bits: dict[str, int] = {}
    out = np.zeros(len(nodes), dtype=np.uint64)
    for i, m in enumerate(nodes.model):
        out[i] = np.uint64(1) << np.uint64(bits.setdefault(m, len(bits)))
    return out, bits


def pod_shapes(pods: T.TracePods, bits: dict[str, int]):
    """Per pod: (cpu, mem, g per device, devices, allowed model bits) as arrays."""
    frac = (pods.num_gpu == 1) & (pods.gpu_milli < 1000) & (pods.gpu_milli > 0)
    g = np.where(frac, pods.gpu_milli / 1000.0, np.where(pods.num_gpu > 0, 1.0, 0.0))
    ndev = pods.num_gpu.astype(np.int32)
    models = np.empty(len(pods), dtype=np.uint64)
    for i, s in enumerate(pods.spec):
        if not s:
            models[i] = ALL_MODELS
        else:
            b = np.uint64(0)
            for m in s:
                if m in bits:
                    b |= np.uint64(1) << np.uint64(bits[m])
            models[i] = b
    return pods.cpu.astype(np.float64), pods.mem.astype(np.float64), g, ndev, models


def type_counts(cpu, mem, g, ndev, models) -> dict[tuple, int]:
    """Pods per task type (cpu, mem, GPU per device, devices, allowed model bits)."""
    keys: dict[tuple, int] = {}
    for k in zip(cpu.tolist(), mem.tolist(), g.tolist(), ndev.tolist(), models.tolist()):
        keys[k] = keys.get(k, 0) + 1
    return keys


def types_from_counts(keys: dict[tuple, int], coverage: float = 1.0) -> dict:
    """The workload distribution as the kernel takes it: the task types and their shares
    (the most popular ones covering ``coverage`` of the pods), most popular first, as
    kai.plugins.fgd.FGD.set_types orders them."""
    items = sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))
    if coverage < 1.0:
        need, acc, keep = coverage * sum(keys.values()), 0, []
        for k, v in items:
            keep.append((k, v))
            acc += v
            if acc >= need:
                break
        items = keep
    gs = sorted({k[2] for k, _ in items if k[2] > 0}) or [1.0]
    gi = {v: i for i, v in enumerate(gs)}
    total = float(sum(v for _, v in items))
    return dict(g_values=np.array(gs), t_cpu=np.array([k[0] for k, _ in items], dtype=np.float64),
                t_mem=np.array([k[1] for k, _ in items], dtype=np.float64),
                t_g=np.array([gi[k[2]] if k[2] > 0 else -1 for k, _ in items], dtype=np.int32),
                t_ndev=np.array([k[3] if k[2] > 0 else 0 for k, _ in items], dtype=np.int32),
                t_models=np.array([k[4] for k, _ in items], dtype=np.uint64),
                t_weight=np.array([v / total for _, v in items]))


def type_table(cpu, mem, g, ndev, models, coverage: float = 1.0):
    """The workload distribution of all the arrivals (the whole inflated trace)."""
    return types_from_counts(type_counts(cpu, mem, g, ndev, models), coverage)


# ---------------------------------------------------------------------- model replay
def model_replay(nodes: T.TraceNodes, pods: T.TracePods, policy: str, coverage: float = 1.0,
                 mix: str = "session") -> Curve:
    """``mix`` (fgd only): ``session``, the task mix of the whole arrival sequence (what one
    session holding every pod sees, and what the FGD paper's simulator gives the policy);
    ``arrived``, the mix of the pods arrived so far, the current one included."""
    n = len(nodes)
    node_model, bits = model_bits(nodes)
    cpu_free = nodes.cpu.astype(np.float64).copy()
    mem_free = nodes.mem.astype(np.float64).copy()
    cpu_cap = nodes.cpu.astype(np.float64)
    gpu_cap = nodes.gpu.astype(np.float64)
    dev = np.zeros((n, MAX_DEV))
    for i in range(n):
        dev[i, :int(nodes.gpu[i])] = 1.0
    cpu, mem, g, ndev, models = pod_shapes(pods, bits)
    types = type_table(cpu, mem, g, ndev, models, coverage) if policy == "fgd" and mix == "session" else None
    arrived: dict[tuple, int] = {}
    out_delta = np.empty(n)
    out_dev = np.empty(n, dtype=np.int32)
    all_nodes = np.ones(n, dtype=np.uint8)
    caches: dict[tuple, _fgd.FragCache] = {}     # per task class (kai.plugins.fgd does the same)
    capacity = gpu_cap.sum()
    demand = np.cumsum(g * np.maximum(ndev, 0) * (g > 0)) / capacity
    alloc = np.empty(len(pods))
    allocated = 0.0
    placed = 0
    spent = 0.0
    for i in range(len(pods)):
        t0 = time.perf_counter()
        gi, ki = g[i], int(ndev[i])
        static = (node_model & models[i]) != 0 if gi > 0 else np.ones(n, dtype=bool)
        best = -1
        if policy == "fgd":
            mask = static.astype(np.uint8) if gi > 0 else all_nodes
            key = (cpu[i], mem[i], gi, ki, int(models[i]))
            if mix == "arrived":
                tkey = (float(cpu[i]), float(mem[i]), float(gi), int(ki), int(models[i]))   # as type_counts
                arrived[tkey] = arrived.get(tkey, 0) + 1
                types = types_from_counts(arrived, coverage)
                caches.clear()          # the mix changed: cached answers were for the old one
            cache = caches.get(key)
            if cache is None:
                cache = caches[key] = _fgd.FragCache()
            fit = _fgd.frag_delta(cpu_free, mem_free, dev, node_model, mask, types["g_values"], types["t_cpu"],
                                  types["t_mem"], types["t_g"], types["t_ndev"], types["t_models"],
                                  types["t_weight"], cpu[i], mem[i], gi, ki, models[i], out_delta, out_dev,
                                  cache)
            if fit:
                # smallest growth of fragmentation; among equal ones the node with least free GPU
                best = int(np.argmin(out_delta + TIE_BREAK * dev.sum(axis=1)))
        else:
            fits = static & (cpu_free >= cpu[i] - EPS) & (mem_free >= mem[i] - EPS)
            if gi > 0 and gi < 1.0:
                fits &= (dev >= gi - EPS).any(axis=1)
            elif gi > 0:
                fits &= (dev >= 1.0 - EPS).sum(axis=1) >= ki
            if fits.any():
                if 0 < gi < 1.0:       # KAI's shared-GPU kernel: idle devices + room in groups
                    free, cap, has = dev.sum(axis=1), gpu_cap, gpu_cap > 0
                elif gi > 0:           # the placement kernel: the idle GPU column (whole devices)
                    free, cap, has = (dev >= 1.0 - EPS).sum(axis=1).astype(np.float64), gpu_cap, gpu_cap > 0
                else:
                    free, cap, has = cpu_free, cpu_cap, cpu_cap > 0
                if policy == "binpack":
                    cand = static & has
                    lo, hi = (free[cand].min(), free[cand].max()) if cand.any() else (0.0, 0.0)
                    span = hi - lo
                    score = np.where(has & (hi > 0), 9.0 if span == 0 else 9.0 * (1.0 - (free - lo) / (span or 1.0)), 0.0)
                else:
                    score = np.where(cap > 0, free / np.where(cap > 0, cap, 1.0), 0.0)
                best = int(np.argmax(np.where(fits, score, -np.inf)))
        if best >= 0:
            cpu_free[best] -= cpu[i]
            mem_free[best] -= mem[i]
            if 0 < gi < 1.0:
                row = dev[best]
                if policy == "fgd":
                    d = int(out_dev[best])
                else:
                    ok = row >= gi - EPS
                    key = np.where(ok, row if policy == "binpack" else -row, np.inf)
                    d = int(np.argmin(key))
                row[d] -= gi
                allocated += gi
            elif gi > 0:
                idx = np.flatnonzero(dev[best] >= 1.0 - EPS)[:ki]
                dev[best, idx] = 0.0
                allocated += ki
            placed += 1
        spent += time.perf_counter() - t0
        alloc[i] = allocated / capacity
    return Curve(policy, demand, alloc, spent / max(len(pods), 1), placed, len(pods))


# ---------------------------------------------------------------------- engine replay
def engine_replay(nodes: T.TraceNodes, pods: T.TracePods, policy: str, mix: str = "session") -> Curve:
    """``mix``: the nodeplacement argument ``fgdMix`` (see kai.plugins.fgd)."""
    from kai.cache.cluster_state import ClusterState
    from kai.config import parse_config
    from kai.framework.plugin import PLUGINS
    from kai.podgrouper.grouper import group_for_pod
    from kai.scheduler import RecordingCache, Scheduler
    from kai.sim.synthetic import open_queue

    plugins = [{"name": "predicates"}, {"name": "proportion"},
               {"name": "nodeplacement", "arguments": {"gpu": policy, "cpu": policy, "fgdMix": mix}}]
    notes = []
    sharing = "gpuspread" if policy == "spread" else "gpupack"
    if sharing in PLUGINS:
        plugins.insert(2, {"name": sharing})     # before nodeplacement: fgd then owns fractions
    else:
        notes.append("GPU sharing not available in the engine: fractional pods stay pending")
    cfg = parse_config({"actions": "allocate", "tiers": [{"plugins": plugins}]})
    state = ClusterState(grouper=lambda pod: group_for_pod(pod, {}))
    state.load(T.to_nodes(nodes), [], T.to_pods(pods), queues=[open_queue("default-queue")])
    from kai.actions.allocate import Allocate
    cache = RecordingCache(state)
    t0 = time.perf_counter()
    ssn = Scheduler(state, cfg).open_session(cache, now=1_900_000_000.0)
    try:
        Allocate().execute(ssn)          # the config's only action: what run_cycle would do
    finally:
        ssn.close()
    spent = time.perf_counter() - t0
    scorer = next((p.fgd for p in ssn.plugins if p.name == "nodeplacement"), None)
    if scorer is not None and scorer.calls:
        notes.append(f"fgd scoring {scorer.seconds / scorer.calls * 1e3:.3f} ms/decision over {scorer.calls}")
    bound = {b.pod.split("/", 1)[1] for b in cache.result.bindings}
    gpu = pods.gpu
    capacity = float(nodes.gpu.sum())
    got = np.array([gpu[i] if pods.name[i] in bound else 0.0 for i in range(len(pods))])
    return Curve(policy, np.cumsum(gpu) / capacity, np.cumsum(got) / capacity, spent / max(len(pods), 1),
                 len(bound), len(pods), notes)


# ---------------------------------------------------------------------- driver
def workload(trace: str, seed: int, inflate: float = 1.3, smoke: bool = SMOKE, trace_dir: str | None = None):
    """(nodes, arrival sequence, origin): the openb trace from ``trace_dir`` / $KAI_TRACE_DIR,
    else the synthetic openb-like stand-in (``origin`` says which); 1 node in 20 at smoke size."""
    w = T.load_workload(trace, trace_dir)
    nodes = w.nodes
    if smoke:
        nodes = nodes.subset(range(0, len(nodes), 20))
    return nodes, T.arrivals(w.pods, nodes.total_gpu, inflate, seed), w.origin


def policy_mix(policy: str) -> tuple[str, str]:
    """``fgd-arrived`` -> (fgd, arrived): FGD with the mix of the pods arrived so far."""
    return ("fgd", "arrived") if policy == "fgd-arrived" else (policy, "session")


def run(traces, seeds: int, policies=POLICIES, mode: str = "model", inflate: float = 1.3,
        smoke: bool = SMOKE, log=print, trace_dir: str | None = None) -> dict:
    """{trace: {policy: [Curve per seed]}}; ``results["_origin"]``: where each trace came from."""
    replay = model_replay if mode == "model" else engine_replay
    out: dict = {"_origin": {}}
    for trace in traces:
        out[trace] = {p: [] for p in policies}
        for seed in range(seeds):
            nodes, arr, origin = workload(trace, seed, inflate, smoke, trace_dir)
            if seed == 0:
                out["_origin"][trace] = origin
                log(f"{trace}: {origin}; {len(nodes)} nodes, {len(arr)} arrivals per seed")
            for p in policies:
                base, mix = policy_mix(p)
                c = replay(nodes, arr, base, mix=mix)
                c.policy = p
                out[trace][p].append(c)
                log(f"{trace:<12} seed {seed} {p:<11} alloc@100% {100 * c.at(1.0):5.1f}%  final "
                    f"{100 * c.final:5.1f}%  placed {c.placed}/{c.pods}  {c.decision_s * 1e3:.3f} ms/pod"
                    + (f"  ({'; '.join(c.notes)})" if c.notes else ""))
    return out


def by_trace(results: dict):
    """(trace, {policy: [Curve]}) pairs of a run() result."""
    return [(t, by) for t, by in results.items() if t != "_origin"]


def table(results: dict) -> str:
    lines = [f"{t}: {o}" for t, o in results.get("_origin", {}).items()]
    lines += ["", "| trace | policy | alloc. at 100% demand | final alloc. (130%) | decision ms/pod |",
              "|---|---|---:|---:|---:|"]
    for trace, by in by_trace(results):
        for p, curves in by.items():
            a100 = np.mean([c.at(1.0) for c in curves]) * 100
            fin = np.mean([c.final for c in curves]) * 100
            ms = np.mean([c.decision_s for c in curves]) * 1e3
            lines.append(f"| {trace} | {p} | {a100:.1f}% | {fin:.1f}% | {ms:.3f} |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = [t for t, _ in by_trace(results)]
    cols = min(len(traces), 2)
    rows = (len(traces) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[len(traces):]:
        ax.set_visible(False)
    grid = np.linspace(0.0, 1.3, 261)
    for ax, trace in zip(axes.flat, traces):
        for p, curves in results[trace].items():
            ys = np.mean([np.interp(grid, c.demand, c.alloc) for c in curves], axis=0)
            ax.plot(grid * 100, ys * 100, label=f"{p} ({ys[np.searchsorted(grid, 1.0)] * 100:.1f}% at 100%)")
        ax.plot([0, 100], [0, 100], color="grey", lw=0.6, ls=":")
        ax.axvline(100, color="grey", lw=0.6, ls="--")
        synthetic = " SYNTHETIC" if "SYNTHETIC" in results.get("_origin", {}).get(trace, "") else ""
        ax.set_title(f"{trace}{synthetic} ({len(results[trace][next(iter(results[trace]))])} seeds)")
        ax.set_xlabel("arrived GPU demand (% of capacity)")
        ax.set_ylabel("GPU allocation ratio (%)")
        ax.set_xlim(0, 130)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default="default", help="comma-separated pod lists (default, gpushare100, ...)")
    ap.add_argument("--trace-dir", default=None,
                    help=f"folder of the openb CSV files (default: ${T.TRACE_ENV}; neither set: a synthetic "
                         "openb-like trace, and the output says so)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help="binpack, spread, fgd (mix of the whole trace), fgd-arrived (mix of the pods arrived so far)")
    ap.add_argument("--mode", choices=("engine", "model"), default="engine",
                    help="engine: the scheduler (one allocate cycle); model: the array replay (fast)")
    ap.add_argument("--inflate", type=float, default=1.3)
    ap.add_argument("--plot", default="")
    args = ap.parse_args(argv)
    results = run(args.trace.split(","), args.seeds, tuple(args.policies.split(",")), args.mode, args.inflate,
                  trace_dir=args.trace_dir)
    print()
    print(table(results))
    if args.plot:
        plot(results, args.plot)
        print(f"\nchart: {args.plot}")
    return 0


# ---------------------------------------------------------------------- pytest-benchmark
def _origin(benchmark, origin: str) -> None:
    benchmark.extra_info["trace"] = origin
    print(f"\n[trace] {origin}")


def test_fgd_model_replay(benchmark):
    """fgd over the whole arrival sequence (array replay): decision time per pod."""
    nodes, arr, origin = workload("default", 0)
    _origin(benchmark, origin)
    curve = benchmark.pedantic(lambda: model_replay(nodes, arr, "fgd"), rounds=1, iterations=1)
    benchmark.extra_info.update({"nodes": len(nodes), "pods": len(arr), "decision_ms": round(curve.decision_s * 1e3, 4),
                                 "alloc_at_100pct": round(curve.at(1.0) * 100, 2),
                                 "final_alloc": round(curve.final * 100, 2), "target_decision_ms": 1.0})
    assert curve.placed > 0


def test_policies_model_replay(benchmark):
    """binpack, spread, fgd and fgd-arrived on the default trace (one seed): fgd with the
    whole trace's mix allocates the most at 100%; fgd-arrived is reported beside it."""
    results = benchmark.pedantic(lambda: run(["default"], 1, log=lambda *_: None), rounds=1, iterations=1)
    _origin(benchmark, results["_origin"]["default"])
    at100 = {p: results["default"][p][0].at(1.0) for p in POLICIES}
    benchmark.extra_info.update({p: round(v * 100, 2) for p, v in at100.items()})
    print("alloc at 100% demand: " + ", ".join(f"{p} {v * 100:.1f}%" for p, v in at100.items()))
    assert at100["fgd"] >= max(at100["binpack"], at100["spread"])
    arrived = results["default"]["fgd-arrived"][0]
    assert arrived.placed > 0 and np.all(arrived.alloc <= arrived.demand + 1e-9)


def test_fgd_engine_replay(benchmark):
    """The scheduler itself (one allocate cycle, nodeplacement gpu/cpu: fgd): time per pod."""
    nodes, arr, origin = workload("default", 0)
    _origin(benchmark, origin)
    curve = benchmark.pedantic(lambda: engine_replay(nodes, arr, "fgd"), rounds=1, iterations=1)
    benchmark.extra_info.update({"nodes": len(nodes), "pods": len(arr), "cycle_ms_per_pod": round(curve.decision_s * 1e3, 4),
                                 "alloc_at_100pct": round(curve.at(1.0) * 100, 2)})
    assert curve.placed > 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: hours of churn must not leak (issue 16, "Soak").

One control plane (``kai.testing.controlplane``: etcd, kube-apiserver, kwok), ``--nodes`` kwok
nodes with 8 GPUs each, a queue tree of four teams (one with a 16-GPU limit, so some pods
wait with a reason), and one ``kai scheduler`` process. For ``--minutes`` the script churns at
a steady rate:

- single pods (1 or 8 GPUs, or CPU only) and gangs of 4-8 one-GPU pods are created with their
  PodGroups and deleted again after a random lifetime;
- a team Queue's quota and over-quota weight are edited every 15 s;
- a node is cordoned every 10 s (and uncordoned 30 s later);
- a node is deleted every 30 s, its pods with it (what the pod GC does), and recreated 10 s later.

Every 2 s it samples the scheduler's RSS and thread count (``/proc/<pid>/status``) and its last
cycle time (``kai_e2e_scheduling_latency_milliseconds``). After the warm-up (the first quarter
of the run, at most 5 minutes) a least-squares line is fitted to each series; the drift over the
window (slope x window) must stay within noise (3 standard errors of the slope) or under a
tolerance (RSS: 5% of the mean; threads: 2; cycle time: 50% of the mean or 20 ms).

At the end the churn stops, the cluster settles for up to ``--settle`` seconds, and every pod
created is accounted for: deleted by the churn, evicted by kai (an ``Evict`` Event names it),
bound, or pending with a ``PodScheduled=False`` reason. Any other pod is lost.

Full size, by hand (figures in docs/benchmarks.md)::

    PYTHONPATH=. python bench/soak.py --minutes 30 --nodes 1000 --json soak.json

CI (scripts/test.sh)::

    PYTHONPATH=. python bench/soak.py --minutes 2 --nodes 200 --check
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from kai.cache.kubeclient import ApiError, KubeClient  # noqa: E402
from kai.testing.controlplane import ControlPlane, _pdeathsig, binaries_available, fake_node_manifest  # noqa: E402

CRD_DIR = REPO / "charts" / "kai-scheduler" / "crds"
NS = "soak"
PG = f"/apis/scheduling.run.ai/v2alpha2/namespaces/{NS}/podgroups"
PODS = f"/api/v1/namespaces/{NS}/pods"
QUEUES = "/apis/scheduling.run.ai/v2/queues"
TEAMS = ("team-a", "team-b", "team-c", "team-d")


def _queue(name: str, parent: str = "", gpu_quota: float = -1, gpu_limit: float = -1, weight: float = 1) -> dict:
    unl = {"quota": -1, "overQuotaWeight": 1, "limit": -1}
    spec: dict[str, Any] = {"resources": {"gpu": {"quota": gpu_quota, "overQuotaWeight": weight, "limit": gpu_limit},
                                          "cpu": dict(unl), "memory": dict(unl)}}
    if parent:
        spec["parentQueue"] = parent
    return {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue", "metadata": {"name": name}, "spec": spec}


def _pod(name: str, group: str, gpus: int) -> dict:
    req: dict[str, str] = {"cpu": "100m", "memory": "128Mi"}
    if gpus:
        req["nvidia.com/gpu"] = str(gpus)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"pod-group-name": group}, "labels": {"soak": "1"}},
            "spec": {"schedulerName": "kai-scheduler", "terminationGracePeriodSeconds": 0,
                     # kube-apiserver's TaintNodesByCondition puts this on new nodes; this control
                     # plane runs no node lifecycle controller to take it off again
                     "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "containers": [{"name": "main", "image": "busybox",
                                     "resources": {"requests": req,
                                                   "limits": {k: v for k, v in req.items() if k == "nvidia.com/gpu"}}}]}}


def _podgroup(name: str, size: int, queue: str) -> dict:
    return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup", "metadata": {"name": name},
            "spec": {"minMember": size, "queue": queue}}


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def fit(ts: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = a + b t: slope b, its standard error, mean, and drift b x window."""
    n = len(ts)
    if n < 3:
        return {"n": n, "slope": 0.0, "stderr": 0.0, "mean": sum(ys) / max(n, 1), "drift": 0.0, "noise": 0.0}
    tm, ym = sum(ts) / n, sum(ys) / n
    sxx = sum((t - tm) ** 2 for t in ts)
    b = sum((t - tm) * (y - ym) for t, y in zip(ts, ys)) / sxx if sxx else 0.0
    a = ym - b * tm
    res = sum((y - a - b * t) ** 2 for t, y in zip(ts, ys))
    se = (res / (n - 2) / sxx) ** 0.5 if sxx else 0.0
    window = ts[-1] - ts[0]
    return {"n": n, "slope": b, "stderr": se, "mean": ym, "drift": b * window, "noise": 3 * se * window}


class Soak:
    def __init__(self, nodes: int, minutes: float, seed: int = 16, rate: float = 3.0, settle: float = 90.0,
                 log=print) -> None:
        self.n_nodes = nodes
        self.seconds = minutes * 60.0
        self.rng = random.Random(seed)
        self.rate = rate
        self.settle = settle
        self.log = log
        self.cp: ControlPlane | None = None
        self.c: KubeClient | None = None
        self.kai: subprocess.Popen | None = None
        self.port = 0
        self.samples: list[dict[str, float]] = []
        self.created: set[str] = set()
        self.deleted: set[str] = set()
        self.counts = {"pods": 0, "gangs": 0, "queue_edits": 0, "cordons": 0, "node_deletes": 0, "pod_deletes": 0}
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(8)

    # ------------------------------------------------------------------ setup
    def start(self) -> Soak:
        t = time.monotonic()
        self.cp = ControlPlane(with_controller_manager=False, with_kwok=True, startup_timeout=120)
        self.cp.start()
        self.c = KubeClient.from_kubeconfig(self.cp.kubeconfig, maxsize=32)
        c = self.c
        for f in sorted(CRD_DIR.glob("*.yaml")):
            crd = yaml.safe_load(f.read_text())
            self._ensure("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            self._wait(lambda n=crd["metadata"]["name"]: any(
                x["type"] == "Established" and x["status"] == "True" for x in
                (c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}").get("status") or {})
                .get("conditions") or []), 60)
        self._ensure("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        self._ensure(QUEUES, _queue("soak-root"))
        for i, team in enumerate(TEAMS):
            self._ensure(QUEUES, _queue(team, "soak-root", gpu_quota=8 * (i + 1),
                                        gpu_limit=16 if team == "team-a" else -1))
        names = [self._node_name(i) for i in range(self.n_nodes)]
        list(self._pool.map(lambda n: c.post("/api/v1/nodes", fake_node_manifest(n, gpus=8, cpu="64",
                                                                                 memory="512Gi")), names))
        self.nodes = names
        self.cp.wait_nodes_ready(names[-10:], timeout=300)
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.logfile = Path(self.cp.workdir) / "logs" / "kai-scheduler.log"
        self.kai = subprocess.Popen([sys.executable, "-m", "kai", "scheduler", "--kubeconfig", self.cp.kubeconfig,
                                     "--schedule-period", "1", "--metrics-port", str(self.port)],
                                    stdout=open(self.logfile, "wb"), stderr=subprocess.STDOUT, cwd=str(REPO),
                                    env=env, preexec_fn=_pdeathsig)
        self._wait(lambda: self._http("/readyz")[0] == 200, 120)
        self.log(f"soak: control plane, {self.n_nodes} nodes and kai up in {time.monotonic() - t:.0f}s")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.kai is not None and self.kai.poll() is None:
            self.kai.send_signal(signal.SIGTERM)
            try:
                self.kai.wait(30)
            except subprocess.TimeoutExpired:
                self.kai.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.cp is not None:
            self.cp.stop()

    @staticmethod
    def _node_name(i: int) -> str:
        return f"soak-gpu-{i}"

    def _ensure(self, path: str, body: dict) -> None:
        try:
            self.c.post(path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    @staticmethod
    def _wait(pred, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except (ApiError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError("soak: timed out")

    def _http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except OSError as exc:
            return getattr(exc, "code", 0), ""

    # ------------------------------------------------------------------ churn
    def _try(self, fn, *a) -> None:
        try:
            fn(*a)
        except ApiError as exc:
            if exc.status not in (404, 409):
                self.log(f"soak: {exc}")

    def _create_job(self, seq: int, expiry: list) -> None:
        r = self.rng.random()
        team = self.rng.choice(TEAMS)
        if r < 0.15:                                    # a gang of 4-8 one-GPU pods
            size = self.rng.randint(4, 8)
            name = f"gang-{seq}"
            pods = [(f"{name}-{k}", 1) for k in range(size)]
            self.counts["gangs"] += 1
        else:
            name = f"job-{seq}"
            pods = [(f"{name}-0", self.rng.choice([0, 1, 1, 1, 8]))]
            size = 1
        self._try(self.c.post, PG, _podgroup(name, size, team))
        for pname, gpus in pods:
            self.created.add(pname)
            self.counts["pods"] += 1
            self._pool.submit(self._try, self.c.post, PODS, _pod(pname, name, gpus))
        life = self.rng.uniform(0.15, 0.5) * min(self.seconds, 240.0)
        expiry.append((time.monotonic() + life, name, [p for p, _ in pods]))

    def _delete_job(self, name: str, pods: list[str]) -> None:
        for p in pods:
            self.deleted.add(p)
            self._pool.submit(self._try, self.c.delete, f"{PODS}/{p}", {"gracePeriodSeconds": 0})
        self._pool.submit(self._try, self.c.delete, f"{PG}/{name}")

    def churn(self) -> None:
        t0 = time.monotonic()
        expiry: list[tuple[float, str, list[str]]] = []
        cordoned: list[tuple[float, str]] = []
        gone: list[tuple[float, int]] = []
        seq = 0
        credit = 0.0
        last = {"queue": t0, "cordon": t0, "node": t0}
        sampler = threading.Thread(target=self._sample_loop, args=(t0,), daemon=True)
        sampler.start()
        while time.monotonic() - t0 < self.seconds:
            now = time.monotonic()
            credit += self.rate * 0.5
            while credit >= 1:
                credit -= 1
                seq += 1
                self._create_job(seq, expiry)
            expiry.sort()
            while expiry and expiry[0][0] <= now:
                _, name, pods = expiry.pop(0)
                self._delete_job(name, pods)
            if now - last["queue"] >= 15:
                last["queue"] = now
                team = self.rng.choice(TEAMS[1:])
                self._try(self.c.patch, f"{QUEUES}/{team}", {"spec": {"resources": {"gpu": {
                    "quota": self.rng.choice([4, 8, 16, 32]), "overQuotaWeight": self.rng.choice([1, 2, 4]),
                    "limit": -1}}}})
                self.counts["queue_edits"] += 1
            if now - last["cordon"] >= 10:
                last["cordon"] = now
                n = self.rng.choice(self.nodes)
                self._try(self.c.patch, f"/api/v1/nodes/{n}", {"spec": {"unschedulable": True}})
                cordoned.append((now, n))
                self.counts["cordons"] += 1
            while cordoned and now - cordoned[0][0] >= 30:
                _, n = cordoned.pop(0)
                self._try(self.c.patch, f"/api/v1/nodes/{n}", {"spec": {"unschedulable": False}})
            if now - last["node"] >= 30:
                last["node"] = now
                i = self.rng.randrange(self.n_nodes)
                self._delete_node(i)
                gone.append((now, i))
            while gone and now - gone[0][0] >= 10:
                _, i = gone.pop(0)
                self._try(self.c.post, "/api/v1/nodes", fake_node_manifest(self._node_name(i), gpus=8, cpu="64",
                                                                           memory="512Gi"))
            if self.kai.poll() is not None:
                raise RuntimeError(f"kai scheduler exited {self.kai.returncode}: see {self.logfile}")
            time.sleep(max(0.0, 0.5 - (time.monotonic() - now)))
        for _, i in gone:           # put every node back
            self._try(self.c.post, "/api/v1/nodes", fake_node_manifest(self._node_name(i), gpus=8, cpu="64",
                                                                       memory="512Gi"))
        for _, n in cordoned:
            self._try(self.c.patch, f"/api/v1/nodes/{n}", {"spec": {"unschedulable": False}})
        self._stop.set()
        sampler.join(5)

    def _delete_node(self, i: int) -> None:
        """Delete a node and, as the pod garbage collector would, the pods bound to it."""
        name = self._node_name(i)
        self._try(self.c.delete, f"/api/v1/nodes/{name}")
        self.counts["node_deletes"] += 1
        pods = self.c.get(PODS, params={"fieldSelector": f"spec.nodeName={name}"})["items"]
        for p in pods:
            self.deleted.add(p["metadata"]["name"])
            self.counts["pod_deletes"] += 1
            self._pool.submit(self._try, self.c.delete, f"{PODS}/{p['metadata']['name']}", {"gracePeriodSeconds": 0})

    def _sample_loop(self, t0: float) -> None:
        while not self._stop.wait(2.0):
            st = proc_status(self.kai.pid)
            code, body = self._http("/metrics")
            m = re.search(r"^kai_e2e_scheduling_latency_milliseconds ([0-9.e+-]+)$", body, re.M) if code == 200 else None
            if st and m:
                self.samples.append({"t": time.monotonic() - t0, "rss_mb": st["VmRSS"] / 1024.0,
                                     "threads": float(st["Threads"]), "cycle_ms": float(m.group(1))})

    # ------------------------------------------------------------------ verdict
    def account(self) -> dict[str, Any]:
        """Settle, then sort every created pod into deleted / evicted / bound / pending-with-reason / lost."""
        deadline = time.monotonic() + self.settle
        while True:
            pods = {p["metadata"]["name"]: p for p in self.c.list(PODS, dict, limit=500)[0]}
            waiting = [n for n, p in pods.items() if not p["spec"].get("nodeName") and not _reason(p)]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(2)
        evicted = {e["involvedObject"]["name"] for e in self.c.list(f"/api/v1/namespaces/{NS}/events", dict)[0]
                   if e.get("reason") == "Evict"}
        out = {"created": len(self.created), "deleted_by_churn": 0, "evicted": 0, "bound": 0,
               "pending_with_reason": 0, "lost": []}
        for name in sorted(self.created):
            p = pods.get(name)
            if p is None:
                if name in self.deleted:
                    out["deleted_by_churn"] += 1
                elif name in evicted:
                    out["evicted"] += 1
                else:
                    out["lost"].append(f"{name}: gone without an Evict event")
            elif p["metadata"].get("deletionTimestamp") and name in self.deleted:
                out["deleted_by_churn"] += 1
            elif p["spec"].get("nodeName"):
                out["bound"] += 1
            elif _reason(p):
                out["pending_with_reason"] += 1
            else:
                out["lost"].append(f"{name}: pending without a reason")
        return out

    def verdict(self) -> dict[str, Any]:
        warm = min(0.25 * self.seconds, 300.0)
        s = [x for x in self.samples if x["t"] >= warm]
        ts = [x["t"] for x in s]
        res: dict[str, Any] = {"samples": len(s), "window_s": round(ts[-1] - ts[0], 1) if ts else 0}
        tolerance = {"rss_mb": lambda f: 0.05 * f["mean"], "threads": lambda f: 2.0,
                     "cycle_ms": lambda f: max(0.5 * f["mean"], 20.0)}
        ok = True
        for key, tol in tolerance.items():
            f = fit(ts, [x[key] for x in s])
            allowed = max(f["noise"], tol(f))
            flat = abs(f["drift"]) <= allowed
            ok &= flat
            res[key] = {"mean": round(f["mean"], 2), "drift_over_window": round(f["drift"], 2),
                        "allowed": round(allowed, 2), "slope_per_hour": round(f["slope"] * 3600, 2),
                        "min": round(min(x[key] for x in s), 2) if s else 0,
                        "max": round(max(x[key] for x in s), 2) if s else 0, "flat": flat}
        res["flat"] = ok
        return res


def _reason(p: dict) -> str:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("message"):
            return c["message"]
    return ""


def _free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--rate", type=float, default=3.0, help="jobs created per second (default 3)")
    p.add_argument("--settle", type=float, default=90.0, help="seconds to settle after the churn (default 90)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--json", help="write the result here")
    p.add_argument("--check", action="store_true", help="exit 1 unless flat and nothing lost")
    args = p.parse_args(argv)
    ok, reason = binaries_available(names=["etcd", "kube-apiserver", "kwok"])
    if not ok:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    def on_term(signum, frame):
        raise KeyboardInterrupt          # run the cleanup below

    signal.signal(signal.SIGTERM, on_term)
    soak = Soak(args.nodes, args.minutes, seed=args.seed, rate=args.rate, settle=args.settle)
    t = time.monotonic()
    try:
        soak.start()
        soak.churn()
        acc = soak.account()
        v = soak.verdict()
    finally:
        soak.stop()
    result = {"minutes": args.minutes, "nodes": args.nodes, "rate": args.rate, "seed": args.seed,
              "wall_s": round(time.monotonic() - t, 1), "churn": soak.counts, "accounting": acc, "series": v}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "samples": soak.samples}, indent=2))
    good = v["flat"] and not acc["lost"]
    if args.check and not good:
        print("soak: FAILED (a series drifts beyond noise, or pods were lost)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

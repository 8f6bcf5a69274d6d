"""``kai simulate --partition-label-value``: one shard's view of the manifests (kai.sim.shard)."""
from __future__ import annotations

import json

import yaml

from kai.cli import main

KEY = "kai.scheduler/node-pool"


def _node(name, pool):
    labels = {KEY: pool} if pool else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"}}}


def _queue(name, pool, parent=None):
    q = {"apiVersion": "scheduling.run.ai/v2", "kind": "Queue",
         "metadata": {"name": name, "labels": {KEY: pool} if pool else {}},
         "spec": {"resources": {r: {"quota": -1, "limit": -1, "overQuotaWeight": 1} for r in ("gpu", "cpu", "memory")}}}
    if parent:
        q["spec"]["parentQueue"] = parent
    return q


def _pod(name, pool, queue):
    labels = {"kai.scheduler/queue": queue, **({KEY: pool} if pool else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"schedulerName": "kai-scheduler",
                     "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def _run(tmp_path, capsys, *flags):
    docs = [_node("a-0", "a"), _node("b-0", "b"), _node("plain-0", None),
            _queue("root-a", "a"), _queue("qa", "a", "root-a"), _queue("root-b", "b"), _queue("qb", "b", "root-b"),
            _queue("root", None), _queue("q", None, "root"),
            _pod("pa", "a", "qa"), _pod("pb", "b", "qb"), _pod("plain", None, "q")]
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    code = main(["simulate", str(f), "--output", "json", *flags])
    out = json.loads(capsys.readouterr().out)
    return code, {b["pod"]: b["node"] for c in out["cycles"] for b in c["bindings"]}, out["warnings"]


def test_whole_cluster_without_the_flag(tmp_path, capsys):
    code, bound, _ = _run(tmp_path, capsys)
    assert code == 0 and set(bound) == {"ns/pa", "ns/pb", "ns/plain"}      # any node: one cluster


def test_one_shard(tmp_path, capsys):
    code, bound, warnings = _run(tmp_path, capsys, "--partition-label-value", "b")
    assert code == 0 and bound == {"ns/pb": "b-0"}
    assert any("partition 'b'" in w and "2 Node(s)" in w for w in warnings), warnings


def test_default_shard(tmp_path, capsys):
    code, bound, _ = _run(tmp_path, capsys, "--partition-label-value", "")
    assert code == 0 and bound == {"ns/plain": "plain-0"}


def test_bad_partition_flag(tmp_path, capsys):
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump(_node("a-0", "a")))
    assert main(["simulate", str(f), "--partition-label-value", "not valid"]) == 2
    assert "--partition-label-value" in capsys.readouterr().err

"""Chart values of scheduling shards (``schedulingShards``, KAI's SchedulingShard spec): one
Deployment + ConfigMap + metrics Service per shard, the default rendering unchanged."""
from __future__ import annotations

import yaml

from test_chart import helm, render, run_helm, CHART, NS, _set_args  # noqa: F401 (fixture)
from kai.cli import build_parser
from kai.config import parse_config

SHARDS = {"gpu-shard": {"partitionLabelValue": "gpu-nodes", "args": {"leader-elect": "true", "schedule-period": "2"},
                        "placementStrategy": {"gpu": "spread", "cpu": "spread"},
                        "queueDepthPerAction": {"reclaim": 8, "allocate": 25}, "kValue": 2.5,
                        "minRuntime": {"preemptMinRuntime": "10m", "reclaimMinRuntime": "5m"},
                        "plugins": {"elastic": {"enabled": False}}, "actions": {"allocate": {"priority": 600}}},
          "cpu": {"partitionLabelValue": "cpu-nodes"}}


def _by(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_no_shards_no_extra_objects(helm):
    docs = render(helm)
    assert list(_by(docs, "Deployment")) == ["kai-scheduler"]
    assert not [d for d in docs if "kai.scheduler/shard" in (d["metadata"].get("labels") or {})]


def test_one_deployment_config_and_service_per_shard(helm):
    docs = render(helm, {"schedulingShards": SHARDS})
    deps, cms, svcs = _by(docs, "Deployment"), _by(docs, "ConfigMap"), _by(docs, "Service")
    assert set(deps) == {"kai-scheduler", "kai-scheduler-gpu-shard", "kai-scheduler-cpu"}
    assert {"kai-scheduler-gpu-shard-config", "kai-scheduler-cpu-config"} <= set(cms)
    assert {"kai-scheduler-gpu-shard-metrics", "kai-scheduler-cpu-metrics"} <= set(svcs)
    base = deps["kai-scheduler"]
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deps.values()]
    assert len(set(selectors)) == 3                  # no Deployment selects another's pods
    for name, d in deps.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        for other in deps.values():
            if other is not d:
                sel = other["spec"]["selector"]["matchLabels"]
                assert not all(labels.get(k) == v for k, v in sel.items()), (name, sel)
    gpu = deps["kai-scheduler-gpu-shard"]
    c = gpu["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(c["args"])
    assert (args.partition_label_value, args.leader_elect, args.schedule_period) == ("gpu-nodes", True, 2.0)
    vol = next(v for v in gpu["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert vol["configMap"]["name"] == "kai-scheduler-gpu-shard-config"
    svc = svcs["kai-scheduler-gpu-shard-metrics"]
    assert svc["spec"]["selector"] == gpu["spec"]["selector"]["matchLabels"]
    # the shard's config: its placement, queue depths, kValue and min-runtime, as kai reads it
    cfg = parse_config(yaml.safe_load(cms["kai-scheduler-gpu-shard-config"]["data"]["config.yaml"]))
    assert cfg.actions[0] == "allocate" and "consolidation" not in cfg.actions
    assert cfg.placement == {"gpu": "spread", "cpu": "spread"}
    assert cfg.queue_depth_per_action == {"allocate": 25, "reclaim": 8}
    assert cfg.plugin_args("proportion") == {"kValue": "2.5"}
    assert cfg.plugin_args("minruntime") == {"defaultPreemptMinRuntime": "10m", "defaultReclaimMinRuntime": "5m"}
    assert cfg.plugin_args("elastic") is None and cfg.plugin_args("gpuspread") is not None
    cpu = build_parser().parse_args(deps["kai-scheduler-cpu"]["spec"]["template"]["spec"]["containers"][0]["args"])
    assert cpu.partition_label_value == "cpu-nodes"
    # the release's own Deployment is the default shard: no partition flag, its own config
    assert build_parser().parse_args(base["spec"]["template"]["spec"]["containers"][0]["args"]) \
        .partition_label_value is None


def test_node_pool_label_key(helm):
    docs = render(helm, {"schedulingShards": {"a": {"partitionLabelValue": "x"}}, "global.nodePoolLabelKey": "example.com/pool"})
    args = _by(docs, "Deployment")["kai-scheduler-a"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--nodepool-label-key=example.com/pool" in args


def test_unsupported_shard_field_fails(helm):
    proc = run_helm(helm, "template", "kai-scheduler", str(CHART), "--namespace", NS,
                    *_set_args({"schedulingShards": {"a": {"usageDBConfig": {"clientType": "prometheus"}}}}), check=False)
    assert proc.returncode != 0 and "usageDBConfig" in proc.stderr


def test_lint_with_shards(helm):
    run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS, *_set_args({"schedulingShards": SHARDS}))


# ---------------------------------------------------------------- node-scale-adjuster
def test_node_scale_adjuster_off_by_default(helm):
    docs = render(helm)
    assert not [d for d in docs if "node-scale-adjuster" in d["metadata"]["name"]]
    assert "kai-scale-adjust" not in {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}


def test_node_scale_adjuster_deployment_and_rbac(helm):
    docs = render(helm, {"global.clusterAutoscaling": True, "nodescaleadjuster.gpuMemoryToFractionRatio": 0.2})
    dep = _by(docs, "Deployment")["kai-scheduler-node-scale-adjuster"]
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "kai-scheduler-node-scale-adjuster"
    args = build_parser().parse_args(spec["containers"][0]["args"])
    assert args.func.__name__ == "cmd_node_scale_adjuster"
    assert (args.scheduler_name, args.scale_adjust_namespace, args.gpu_memory_to_fraction_ratio) == \
        ("kai-scheduler", "kai-scale-adjust", 0.2)
    assert args.scaling_pod_image == spec["containers"][0]["image"]        # kai's image by default
    assert "kai-scale-adjust" in {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    sas = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceAccount"}
    assert ("kai-scale-adjust", "scaling-pod") in sas
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "kai-scheduler-node-scale-adjuster")
    assert role["metadata"]["namespace"] == "kai-scale-adjust"
    assert {"create", "delete"} <= set(role["rules"][0]["verbs"]) and role["rules"][1]["resources"] == ["pods/status"]


# ---------------------------------------------------------------- selective monitoring
def test_selective_monitoring_values_become_flags(helm):
    docs = render(helm, {"global.podLabelSelector": {"app": "batch", "tier": "gpu"},
                         "global.namespaceLabelSelector": {"team": "ml"}, "schedulingShards": {"a": {}}})
    for dep in ("kai-scheduler", "kai-scheduler-a"):
        c = _by(docs, "Deployment")[dep]["spec"]["template"]["spec"]["containers"][0]
        args = build_parser().parse_args(c["args"])
        assert (args.pod_label_selector, args.namespace_label_selector) == ("app=batch,tier=gpu", "team=ml")
    c = _by(render(helm), "Deployment")["kai-scheduler"]["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in c["args"] if "label-selector" in a]

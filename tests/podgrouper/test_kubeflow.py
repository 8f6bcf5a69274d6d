"""Kubeflow training groupers: minMember rules, PyTorchJob master/worker SubGroups and
segments, MPIJob launcher policy (cases from KAI's kubeflow, pytorch and mpi grouper tests)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, owned_by, pod, shape, sub
from kai.podgrouper.metadata import GroupingError

RT, RI = "training.kubeflow.org/replica-type", "training.kubeflow.org/replica-index"


def job(kind, field, specs, api="kubeflow.org/v1", **spec):
    return obj(kind, "test_job", "1", api, spec={field: specs, **spec})


def pytorch(master=2, worker=4, **spec):
    specs = {}
    if master is not None:
        specs["Master"] = {"replicas": master}
    if worker is not None:
        specs["Worker"] = {"replicas": worker}
    return job("PyTorchJob", "pytorchReplicaSpecs", specs, **spec)


@pytest.mark.parametrize("kind,field,specs,spec,expected", [
    ("TFJob", "tfReplicaSpecs", {"PS": {"replicas": 2}, "Worker": {"replicas": 4}, "Chief": {"replicas": 1}}, {}, 7),
    ("TFJob", "tfReplicaSpecs", {"Worker": {"replicas": 4}}, {"runPolicy": {"schedulingPolicy": {"minAvailable": 2}}}, 2),
    ("XGBoostJob", "xgbReplicaSpecs", {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}, {}, 4),
    ("JAXJob", "jaxReplicaSpecs", {"Worker": {"replicas": 5}}, {}, 5),
    ("MPIJob", "mpiReplicaSpecs", {"Launcher": {"replicas": 1}, "Worker": {"replicas": 2}}, {}, 3),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Master": {"replicas": 2}, "Worker": {"replicas": 4}}, {}, 6),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Master": {"replicas": 2}, "Worker": {"replicas": 4}},
     {"elasticPolicy": {"minReplicas": 66}}, 66),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Master": {"replicas": 2}, "Worker": {"replicas": 4}},
     {"runPolicy": {"schedulingPolicy": {"minAvailable": 33}}}, 33),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Master": {"replicas": 2}, "Worker": {"replicas": 4}},
     {"elasticPolicy": {"minReplicas": 66}, "runPolicy": {"schedulingPolicy": {"minAvailable": 33}}}, 33),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Master": {"replicas": 2}}, {}, 2),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Worker": {"replicas": 4}}, {}, 4),
    ("PyTorchJob", "pytorchReplicaSpecs", {"Worker": {"replicas": 4}}, {"elasticPolicy": {"minReplicas": 66}}, 66),
])
def test_min_member(kind, field, specs, spec, expected):
    api = "kubeflow.org/v2beta1" if kind == "MPIJob" else "kubeflow.org/v1"
    o = job(kind, field, specs, api=api, **spec)
    m = group(owned_by(o), o)
    assert (m.name, m.min_available, m.owner.kind, m.priority_class_name) == ("pg-test_job-1", expected, kind, "train")


@pytest.mark.parametrize("kind,field,specs,match", [
    ("TFJob", "other", {}, "doesn't have a tfReplicaSpecs field"),
    ("XGBoostJob", "xgbReplicaSpecs", {"Worker": {"replicas": 1}}, "Master replica spec which is required"),
    ("MPIJob", "mpiReplicaSpecs", {"Launcher": {"replicas": 1}}, "Worker replica spec which is required"),
    ("TFJob", "tfReplicaSpecs", {"Worker": {"replicas": 0}}, "doesn't allow for 0 Worker pods"),
    ("TFJob", "tfReplicaSpecs", {"Worker": {}}, "doesn't allow for 0 Worker pods"),
    ("JAXJob", "jaxReplicaSpecs", {"Worker": {"replicas": "two"}}, "expected an integer"),
])
def test_replica_spec_errors(kind, field, specs, match):
    o = job(kind, field, specs)
    with pytest.raises(GroupingError, match=match):
        group(owned_by(o), o)


def test_mpi_wait_for_workers_ready_counts_the_launcher_only_once_it_exists():
    specs = {"Launcher": {"replicas": 1}, "Worker": {"replicas": 4}}
    o = job("MPIJob", "mpiReplicaSpecs", specs, api="kubeflow.org/v2beta1", launcherCreationPolicy="WaitForWorkersReady")
    worker = owned_by(o, "test_job-worker-0", "w0", labels={"training.kubeflow.org/job-name": "test_job",
                                                            "training.kubeflow.org/job-role": "worker"})
    assert group(worker, o).min_available == 4
    launcher = owned_by(o, "test_job-launcher", "l0", labels={"training.kubeflow.org/job-name": "test_job",
                                                             "training.kubeflow.org/job-role": "launcher"})
    assert group(worker, o, pods=[launcher]).min_available == 5
    other = job("MPIJob", "mpiReplicaSpecs", specs, api="kubeflow.org/v2beta1")
    assert group(owned_by(other), other).min_available == 5


def member(o, name, role=None, index=None, annotations=None):
    labels = {}
    if role:
        labels[RT] = role
    if index is not None:
        labels[RI] = str(index)
    return owned_by(o, name, f"uid-{name}", labels=labels, annotations=annotations)


def test_pytorch_master_worker_subgroups():
    o = pytorch()
    assert shape(group(member(o, "m0", "master"), o)) == [("master", 2, None, ("m0",)), ("worker", 4, None, ())]
    assert shape(group(member(o, "w0", "worker"), o)) == [("master", 2, None, ()), ("worker", 4, None, ("w0",))]
    assert shape(group(member(o, "x"), o)) == [("master", 2, None, ()), ("worker", 4, None, ())]
    only_master = pytorch(worker=None)
    assert shape(group(member(only_master, "m0", "master"), only_master)) == [("master", 2, None, ("m0",))]
    only_worker = pytorch(master=None)
    assert shape(group(member(only_worker, "w0", "worker"), only_worker)) == [("worker", 4, None, ("w0",))]
    # the worker SubGroup gets what minMember leaves after the masters
    elastic = pytorch(runPolicy={"schedulingPolicy": {"minAvailable": 3}})
    assert sub(group(member(elastic, "w0", "worker"), elastic), "worker").min_available == 1
    tiny = pytorch(runPolicy={"schedulingPolicy": {"minAvailable": 1}})
    assert sub(group(member(tiny, "w0", "worker"), tiny), "worker").min_available == 0


def segmented(master, workers, size, **worker_annotations):
    ann = {"kai.scheduler/segment-size": size, **worker_annotations}
    specs = {"Master": {"replicas": master},
             "Worker": {"replicas": workers, "template": {"metadata": {"annotations": ann}}}}
    return job("PyTorchJob", "pytorchReplicaSpecs", specs)


def test_pytorch_segments():
    o = segmented(1, 4, "2")
    m = group(member(o, "test-job-master-0", "master", 0, {"kai.scheduler/segment-size": "2"}), o)
    assert m.min_available == 5
    assert shape(m) == [("master", 1, None, ("test-job-master-0",)), ("worker", 4, None, ()),
                        ("worker-0", 2, "worker", ()), ("worker-1", 2, "worker", ())]
    assert sub(group(member(o, "w0", "worker", 0), o), "worker-0").pods == ["w0"]
    assert sub(group(member(o, "w1", "worker", 1), o), "worker-0").pods == ["w1"]      # from the template
    assert sub(group(member(o, "w2", "worker", 2), o), "worker-1").pods == ["w2"]
    five = segmented(1, 5, "2")
    m = group(member(five, "w4", "worker", 4), five)
    assert shape(m)[1:] == [("worker", 5, None, ()), ("worker-0", 2, "worker", ()), ("worker-1", 2, "worker", ()),
                            ("worker-2", 1, "worker", ("w4",))]


@pytest.mark.parametrize("annotations,pod_annotations,owner_annotations,expected", [
    ({"kai.scheduler/topology": "cluster-topology", "kai.scheduler/segment-topology-required-placement": "rack",
      "kai.scheduler/segment-topology-preferred-placement": "node"}, {}, {}, ("cluster-topology", "rack", "node")),
    ({"kai.scheduler/segment-topology-required-placement": "rack"}, {}, {"kai.scheduler/topology": "cluster-topology"},
     ("cluster-topology", "rack", "")),
    ({"kai.scheduler/segment-topology-required-placement": "rack"}, {}, {}, None),
    ({}, {"kai.scheduler/topology": "cluster-topology", "kai.scheduler/segment-topology-preferred-placement": "node"},
     {}, ("cluster-topology", "", "node")),
    ({"kai.scheduler/topology": "cluster-topology"}, {}, {}, None),
])
def test_pytorch_segment_topology(annotations, pod_annotations, owner_annotations, expected):
    o = segmented(1, 4, "2", **annotations)
    o["metadata"]["annotations"] = owner_annotations
    m = group(member(o, "w0", "worker", 0, pod_annotations), o)
    for name in ("worker-0", "worker-1"):
        t = sub(m, name).topology
        assert (None if t is None else (t.topology, t.required, t.preferred)) == expected


@pytest.mark.parametrize("o,pod_kw,match", [
    (segmented(1, 4, "invalid"), dict(annotations={"kai.scheduler/segment-size": "not-a-number"}),
     "invalid segment size"),
    (segmented(1, 4, "invalid-size"), {}, "invalid segment size"),
    (segmented(1, 4, "0"), {}, "positive integer"),
    (segmented(1, 4, "2"), dict(index=None), "replica index label not found"),
])
def test_pytorch_segment_errors(o, pod_kw, match):
    kw = {"role": "worker", "index": 0, **pod_kw}
    with pytest.raises(GroupingError, match=match):
        group(member(o, "w", kw["role"], kw["index"], kw.get("annotations")), o)

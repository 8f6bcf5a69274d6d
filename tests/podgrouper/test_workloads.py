"""Built-in and single-template workloads (cases from KAI's job, cronjobs, deployment, spark,
spotrequest, aml and runaijob grouper tests)."""
from __future__ import annotations

import pytest

from grouper_cases import group, obj, owned_by, pod, ref
from kai.podgrouper.defaults import GrouperConfig
from kai.podgrouper.metadata import GroupingError

NO_LEGACY = GrouperConfig(search_legacy_podgroups=False)


def job(spec=None, annotations=None, labels=None, name="test_name", uid="1234-5678"):
    return obj("Job", name, uid, "batch/v1", spec=spec if spec is not None else {}, labels=labels,
               annotations=annotations)


def pg(name, owner_kind="Pod", spec=None):
    return {"apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": "test_namespace",
                         "ownerReferences": [{"kind": owner_kind, "name": "x", "uid": "x", "apiVersion": "v1"}]},
            "spec": spec or {}}


def test_batch_job_one_podgroup_per_pod():
    j = job(spec={"parallelism": 2}, labels={"test_label": "test_value"}, annotations={"test_annotation": "test_value"})
    a = group(owned_by(j, "test_name-4kgrb", "a"), j)
    b = group(owned_by(j, "test_name-77t4m", "b"), j)
    assert a.name == "pg-test_name-4kgrb-1234-5678"
    assert b.name == "pg-test_name-77t4m-1234-5678"
    assert (a.owner.kind, a.owner.api_version, a.owner.uid, a.owner.name) == ("Job", "batch/v1", "1234-5678",
                                                                             "test_name")
    assert len(a.annotations) == 2 and len(a.labels) == 1
    assert (a.queue, a.priority_class_name, a.min_available) == ("default-queue", "train", 1)


@pytest.mark.parametrize("parallelism,existing,search,expected", [
    # a legacy PodGroup named after the Job (parallelism <= 1) is kept when searching for legacy groups
    (None, "pg-test_name-1234-5678", True, "pg-test_name-1234-5678"),
    (1, "pg-test_name-1234-5678", True, "pg-test_name-1234-5678"),
    (None, "pg-test_name-1234-5678", False, "pg-test_name-4kgrb-1234-5678"),
    (None, None, True, "pg-test_name-4kgrb-1234-5678"),
    # with parallelism > 1 the legacy name is the per-pod name
    (3, "pg-test_name-1234-5678", True, "pg-test_name-4kgrb-1234-5678"),
])
def test_batch_job_legacy_podgroup(parallelism, existing, search, expected):
    j = job(spec={} if parallelism is None else {"parallelism": parallelism})
    cfg = GrouperConfig(search_legacy_podgroups=search)
    m = group(owned_by(j, "test_name-4kgrb", "a"), j, config=cfg, podgroups=[pg(existing)] if existing else [])
    assert m.name == expected


def test_batch_min_member_gangs_the_job():
    j = job(spec={"parallelism": 6}, annotations={"kai.scheduler/batch-min-member": "2"})
    names = {group(owned_by(j, f"test_name-{i}", f"u{i}"), j).name for i in range(3)}
    assert names == {"pg-test_name-1234-5678"}
    assert group(owned_by(j, "test_name-0", "u0"), j).min_available == 2
    # a pod that already runs in its per-pod PodGroup keeps it
    m = group(owned_by(j, "test_name-0", "u0"), j, podgroups=[pg("pg-test_name-0-1234-5678")])
    assert (m.name, m.min_available) == ("pg-test_name-0-1234-5678", 1)
    for bad in ("0", "-1", "two"):
        j2 = job(annotations={"kai.scheduler/batch-min-member": bad})
        with pytest.raises(GroupingError, match="batch-min-member"):
            group(owned_by(j2), j2)


def test_cronjob_groups_by_the_pods_job():
    cron = obj("CronJob", "nightly", "cron-u", "batch/v1", labels={"kai.scheduler/queue": "cron-q"})
    j = obj("Job", "nightly-28000", "job-uid", "batch/v1", labels={"kai.scheduler/queue": "job-q"},
            owner=ref("CronJob", "nightly", "cron-u", "batch/v1"), spec={"parallelism": 2})
    m = group(owned_by(j), j, cron)
    assert (m.name, m.owner.kind, m.owner.name, m.owner.uid, m.owner.api_version) == \
        ("pg-nightly-28000-job-uid", "Job", "nightly-28000", "job-uid", "batch/v1")
    assert m.queue == "job-q"


def test_cronjob_errors():
    cron = obj("CronJob", "nightly", "cron-u", "batch/v1")
    # the pod's owner is the CronJob itself: no Job reference
    with pytest.raises(GroupingError, match="no owner reference of type 'Job'"):
        group(owned_by(cron), cron)
    j = obj("Job", "nightly-1", "j-u", "batch/v1", owner=ref("CronJob", "nightly", "cron-u", "batch/v1"))
    p = owned_by(j)
    from grouper_cases import reader
    from kai.podgrouper.defaults import Context
    from kai.podgrouper.objects import Obj
    from kai.podgrouper.plugins.workloads import cronjob
    with pytest.raises(GroupingError, match='jobs.batch "nightly-1" not found'):
        cronjob(Context(reader(cron, pods=[p])), Obj(cron), p, [])


def test_deployment_one_podgroup_per_pod_inference():
    dep = obj("Deployment", "test_deployment", "1", "apps/v1", labels={"kai.scheduler/queue": "test_queue"})
    rs = obj("ReplicaSet", "test_deployment-5d9", "2", "apps/v1", owner=ref("Deployment", "test_deployment", "1",
                                                                             "apps/v1"))
    a = group(owned_by(rs, "pod-1", "3"), rs, dep)
    b = group(owned_by(rs, "pod-2", "4"), rs, dep)
    assert (a.name, a.priority_class_name, a.queue) == ("pg-pod-1-3", "inference", "test_queue")
    assert (b.name, b.priority_class_name, b.queue) == ("pg-pod-2-4", "inference", "test_queue")
    assert (a.owner.kind, a.owner.name, a.owner.uid) == ("Pod", "pod-1", "3")
    dep2 = obj("Deployment", "d", "1", "apps/v1", labels={"priorityClassName": "train"})
    assert group(owned_by(dep2), dep2).priority_class_name == "train"


def test_bare_pod_and_spark():
    m = group(pod("pod-job", ""))
    assert (m.name, m.owner.kind, m.owner.api_version, m.priority_class_name) == ("pg-pod-job-", "Pod", "v1", "train")
    assert m.annotations == {"kai.scheduler/top-owner-metadata":
                             'name: pod-job\nuid: ""\ngroup: ""\nversion: v1\nkind: Pod\n'}
    # a Spark pod needs both labels; then it joins the application's PodGroup
    assert group(pod("driver", "d", labels={"spark-app-name": "spark-app"})).name == "pg-driver-d"
    assert group(pod("driver", "d", labels={"spark-app-selector": "spark-selector"})).name == "pg-driver-d"
    m = group(pod("driver", "d", labels={"spark-app-name": "spark-app", "spark-app-selector": "spark-selector"}))
    assert m.name == "spark-selector"


def test_notebook_spot_request_aml():
    nb = obj("Notebook", "jupyter", "nb-u", "kubeflow.org/v1beta1")
    sts = obj("StatefulSet", "jupyter", "sts-u", "apps/v1", owner=ref("Notebook", "jupyter", "nb-u",
                                                                     "kubeflow.org/v1beta1"))
    m = group(owned_by(sts), sts, nb)
    assert (m.name, m.priority_class_name, m.owner.kind) == ("pg-jupyter-nb-u", "build", "Notebook")
    # KAI maps Notebook kubeflow.org/v1beta1 only: v1 gets the default rule
    nb1 = obj("Notebook", "jupyter", "nb-u", "kubeflow.org/v1")
    assert group(owned_by(nb1), nb1).priority_class_name == "train"
    spot = obj("SPOTRequest", "s", "s-u", "egx.nvidia.io/v1")
    assert group(owned_by(spot), spot).priority_class_name == "inference"
    aml = obj("AmlJob", "a", "a-u", "amlarc.azureml.com/v1alpha1",
              spec={"job": {"options": {"envs": {"AZUREML_NODE_COUNT": 4}}}})
    assert group(owned_by(aml), aml).min_available == 4
    aml_bad = obj("AmlJob", "a", "a-u", "amlarc.azureml.com/v1alpha1", spec={})
    with pytest.raises(GroupingError, match="azureml envs count not found"):
        group(owned_by(aml_bad), aml_bad)


def test_runai_job_name():
    rj = obj("RunaiJob", "train", "r-u", "run.ai/v1", spec={"parallelism": 2})
    assert group(owned_by(rj, "train-abc12"), rj, config=NO_LEGACY).name == "pg-train-r-u"
    assert group(owned_by(rj, "solo"), rj, config=NO_LEGACY).name == "pg-solo-r-u"
    m = group(owned_by(rj, "train-abc12"), rj, podgroups=[pg("pg-train-abc12-r-u")])
    assert m.name == "pg-train-abc12-r-u"


@pytest.mark.parametrize("spec,annotations,expected", [
    ({"podManagementPolicy": "Parallel"}, {"kai.scheduler/min-member": "4"}, 4),
    ({"podManagementPolicy": "Parallel"}, {}, 1),
    ({}, {}, 1),
])
def test_statefulset(spec, annotations, expected):
    sts = obj("StatefulSet", "db", "sts-u", "apps/v1", spec=spec, annotations=annotations)
    m = group(owned_by(sts), sts)
    assert (m.name, m.min_available) == ("pg-db-sts-u", expected)


def test_statefulset_min_member_needs_parallel():
    sts = obj("StatefulSet", "db", "sts-u", "apps/v1", spec={}, annotations={"kai.scheduler/min-member": "4"})
    with pytest.raises(GroupingError, match="requires podManagementPolicy: Parallel"):
        group(owned_by(sts), sts)
    sts = obj("StatefulSet", "db", "sts-u", "apps/v1", spec={"podManagementPolicy": "Parallel"},
              annotations={"kai.scheduler/min-member": "x"})
    with pytest.raises(GroupingError, match="not an integer"):
        group(owned_by(sts), sts)

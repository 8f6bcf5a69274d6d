"""kai.sim.traces: openb CSVs -> columns, arrival sequences (inflation), kai Nodes and Pods."""
import numpy as np
import pytest

from kai.api import constants as C
from kai.cache.cluster_state import ClusterState
from kai.podgrouper.grouper import group_for_pod
from kai.sim import traces as T
from kai.sim.synthetic import open_queue

NODES_CSV = "sn,cpu_milli,memory_mib,gpu,model\nn-0,32000,131072,2,T4\nn-1,64000,262144,8,V100M32\nc-0,16000,65536,0,\n"
PODS_CSV = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
            "p-2,4000,8192,1,470,,LS,Running,30,40,30\n"
            "p-0,8000,16384,2,1000,V100M16|V100M32,LS,Running,10,40,10\n"
            "p-1,2000,4096,0,0,,BE,Running,20,40,20\n"
            "p-3,6000,12288,1,1000,nan,LS,Running,40,50,40\n")


@pytest.fixture
def trace_dir(tmp_path):
    (tmp_path / "nodes.csv").write_text(NODES_CSV)
    (tmp_path / "openb_pod_list_tiny.csv").write_text(PODS_CSV)
    return tmp_path


def test_load_nodes_keeps_gpu_nodes(trace_dir):
    nodes = T.load_nodes(str(trace_dir / "nodes.csv"))
    assert nodes.name == ["n-0", "n-1"] and nodes.model == ["T4", "V100M32"]
    assert nodes.total_gpu == 10 and list(nodes.cpu) == [32000, 64000]
    assert len(T.load_nodes(str(trace_dir / "nodes.csv"), gpu_only=False)) == 3


def test_load_pods_in_creation_order_with_specs_and_gpu_demand(trace_dir):
    pods = T.load_pods("tiny", trace_dir=str(trace_dir))
    assert pods.name == ["p-0", "p-1", "p-2", "p-3"]
    assert pods.spec == [("V100M16", "V100M32"), (), (), ()]
    assert list(pods.gpu) == pytest.approx([2.0, 0.0, 0.47, 1.0])


def test_arrivals_inflate_to_the_target_demand_seeded(trace_dir):
    pods = T.load_pods("tiny", trace_dir=str(trace_dir))
    a = T.arrivals(pods, capacity_gpu=10, inflate=1.3, seed=7)
    demand = a.gpu.sum()
    assert 13.0 <= demand < 13.0 + 2.0          # stops at the first draw reaching 130%
    assert len(set(a.name)) == len(a)            # copies get unique names
    b = T.arrivals(pods, capacity_gpu=10, inflate=1.3, seed=7)
    assert a.name == b.name
    c = T.arrivals(pods, capacity_gpu=10, inflate=1.3, seed=8)
    assert a.name != c.name
    assert T.arrivals(pods, 10) is pods            # no inflation: the trace as is


def test_to_nodes_labels_and_allocatable(trace_dir):
    (n0, n1) = T.to_nodes(T.load_nodes(str(trace_dir / "nodes.csv")))
    assert n0.metadata.labels[T.MODEL_LABEL] == "T4"
    assert n0.metadata.labels[C.GPU_COUNT_LABEL] == "2"
    assert n1.metadata.labels[C.GPU_MEMORY_LABEL] == "32768"
    assert n0.status.allocatable == {"cpu": "32000m", "memory": "131072Mi", "pods": "1000", "nvidia.com/gpu": "2"}


def test_to_pods_fraction_whole_cpu_and_model_affinity(trace_dir):
    pods = T.to_pods(T.load_pods("tiny", trace_dir=str(trace_dir)))
    whole2, cpu, frac, whole1 = pods
    assert frac.metadata.annotations == {C.GPU_FRACTION: "0.47"}
    assert "nvidia.com/gpu" not in frac.spec.containers[0].resources.limits
    assert whole2.spec.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
    expr = whole2.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution \
        .node_selector_terms[0].match_expressions[0]
    assert (expr.key, expr.operator, expr.values) == (T.MODEL_LABEL, "In", ["V100M16", "V100M32"])
    assert whole1.spec.affinity is None and cpu.spec.containers[0].resources.limits == {}
    assert [p.metadata.creation_timestamp for p in pods] == sorted(p.metadata.creation_timestamp for p in pods)
    assert all(p.spec.scheduler_name == "kai-scheduler" for p in pods)


def test_cluster_state_reads_them_as_kai_tasks(trace_dir):
    nodes = T.load_nodes(str(trace_dir / "nodes.csv"))
    pods = T.load_pods("tiny", trace_dir=str(trace_dir))
    st = ClusterState(grouper=lambda pod: group_for_pod(pod, {}))
    st.load(T.to_nodes(nodes), [], T.to_pods(pods), queues=[open_queue("default-queue")])
    tasks = {t.name: t for j in st.jobs.values() for t in j.tasks.values()}
    assert tasks["p-2"].gpu_sharing.portion == pytest.approx(0.47)
    assert tasks["p-0"].gpu_sharing is None and tasks["p-0"].req[2] == 2
    assert all(j.queue == "default-queue" for j in st.jobs.values())


def test_trace_dir_comes_from_the_flag_or_the_environment(trace_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(T.TRACE_ENV, raising=False)
    assert T.find_trace_dir() is None                      # nothing set: no folder, no guess
    (trace_dir / T.NODE_FILE).write_text(NODES_CSV)
    assert T.find_trace_dir(str(trace_dir)) == str(trace_dir)
    monkeypatch.setenv(T.TRACE_ENV, str(trace_dir))
    assert T.find_trace_dir() == str(trace_dir)
    assert T.load_nodes().name == ["n-0", "n-1"]
    monkeypatch.setenv(T.TRACE_ENV, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="KAI_TRACE_DIR=.*typo.*openb_node_list_gpu_node.csv"):
        T.load_workload()                                  # a wrong folder is an error, not a synthetic run
    with pytest.raises(FileNotFoundError, match="--trace-dir"):
        T.find_trace_dir(str(tmp_path / "typo"))


def test_no_folder_set_loading_by_name_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv(T.TRACE_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="KAI_TRACE_DIR"):
        T.load_nodes()


def test_load_workload_reads_the_folder_and_names_it(trace_dir, monkeypatch):
    (trace_dir / T.NODE_FILE).write_text(NODES_CSV)
    monkeypatch.setenv(T.TRACE_ENV, str(trace_dir))
    w = T.load_workload("tiny")
    assert not w.synthetic and str(trace_dir) in w.origin and "tiny" in w.origin
    assert w.pods.name == ["p-0", "p-1", "p-2", "p-3"] and len(w.nodes) == 2


def test_load_workload_without_the_trace_is_synthetic_and_says_so(monkeypatch):
    monkeypatch.delenv(T.TRACE_ENV, raising=False)
    w = T.load_workload("gpushare100")
    assert w.synthetic and "SYNTHETIC" in w.origin and "KAI_TRACE_DIR" in w.origin
    assert len(w.nodes) == 1213 and w.nodes.total_gpu == 6212      # the openb cluster's GPU nodes
    assert all(n.startswith("synth-") for n in w.nodes.name[:3] + w.pods.name[:3])
    # it goes through the same path as the real trace: inflation, kai objects
    a = T.arrivals(w.pods, w.nodes.total_gpu, 1.3, seed=0)
    assert a.gpu.sum() >= 1.3 * 6212
    assert len(T.to_pods(a.take(range(5)))) == 5


def test_the_real_openb_files():
    """The Alibaba trace when $KAI_TRACE_DIR names it (scripts/test.sh sets it when a copy is
    next to the repository); otherwise its synthetic stand-in with the same cluster."""
    w = T.load_workload("default")
    nodes = w.nodes
    assert len(nodes) == 1213 and nodes.total_gpu == 6212
    assert len(w.pods) == 8152
    a = T.arrivals(w.pods, nodes.total_gpu, 1.3, seed=0)
    assert a.gpu.sum() >= 1.3 * 6212
    print(w.origin)

"""kai.cache.node_table: static predicates as masks, node updates, name ranks."""
import msgspec
import numpy as np
import pytest

from kai.api.k8s import Node, Pod
from kai.api.resources import CPU, GPU, ResourceRegistry
from kai.cache.cluster_state import ClusterState
from kai.cache.node_table import NodeTable, tolerates


def node(name, labels=None, taints=(), unschedulable=False, ready=None, cpu="8", gpu=0, pods=110):
    alloc = {"cpu": cpu, "memory": "32Gi", "pods": pods}
    if gpu:
        alloc["nvidia.com/gpu"] = gpu
    st = {"allocatable": alloc}
    if ready is not None:
        st["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return msgspec.convert({"metadata": {"name": name, "labels": dict(labels or {})},
                            "spec": {"unschedulable": unschedulable, "taints": list(taints)},
                            "status": st}, Node)


def pod(node_selector=None, terms=None, tolerations=(), name="p", node_name="", cpu="1", phase="Pending"):
    spec = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
            "nodeSelector": dict(node_selector or {}), "tolerations": list(tolerations),
            "nodeName": node_name, "schedulerName": "kai-scheduler"}
    if terms is not None:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                             {"nodeSelectorTerms": terms}}}
    return msgspec.convert({"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                                         "annotations": {"pod-group-name": "pg"}},
                            "spec": spec, "status": {"phase": phase}}, Pod)


def table(*nodes):
    t = NodeTable(ResourceRegistry())
    for n in nodes:
        t.upsert(n)
    t.refresh_rank()
    return t


def names(t, mask):
    return sorted(t.infos[i].name for i in np.flatnonzero(mask))


LABELLED = [node("a", {"zone": "z1", "gpu-type": "a100", "rank": "3"}),
            node("b", {"zone": "z2", "gpu-type": "h100", "rank": "10"}),
            node("c", {"zone": "z1", "rank": "x"}),
            node("d", {})]


def test_node_selector():
    t = table(*LABELLED)
    assert names(t, t.selector_mask(pod({"zone": "z1"}))) == ["a", "c"]
    assert names(t, t.selector_mask(pod({"zone": "z1", "gpu-type": "a100"}))) == ["a"]
    assert names(t, t.selector_mask(pod({"zone": "nowhere"}))) == []
    assert names(t, t.selector_mask(pod({"no-such-key": "v"}))) == []
    assert names(t, t.selector_mask(pod({"kubernetes.io/hostname": "d"}))) == ["d"]   # defaulted label


@pytest.mark.parametrize("expr, expected", [
    ({"key": "zone", "operator": "In", "values": ["z1", "z9"]}, ["a", "c"]),
    ({"key": "zone", "operator": "NotIn", "values": ["z1"]}, ["b", "d"]),
    ({"key": "missing", "operator": "NotIn", "values": ["x"]}, ["a", "b", "c", "d"]),
    ({"key": "gpu-type", "operator": "Exists"}, ["a", "b"]),
    ({"key": "gpu-type", "operator": "DoesNotExist"}, ["c", "d"]),
    ({"key": "rank", "operator": "Gt", "values": ["5"]}, ["b"]),
    ({"key": "rank", "operator": "Lt", "values": ["5"]}, ["a"]),        # non-integer "x" never matches
    ({"key": "rank", "operator": "Gt", "values": ["notint"]}, []),
    ({"key": "zone", "operator": "Bogus", "values": ["z1"]}, []),
])
def test_required_affinity_operators(expr, expected):
    t = table(*LABELLED)
    assert names(t, t.selector_mask(pod(terms=[{"matchExpressions": [expr]}]))) == expected


def test_match_fields_metadata_name():
    t = table(*LABELLED)
    f = {"key": "metadata.name", "operator": "In", "values": ["b", "d", "ghost"]}
    assert names(t, t.selector_mask(pod(terms=[{"matchFields": [f]}]))) == ["b", "d"]
    f = {"key": "metadata.name", "operator": "NotIn", "values": ["b"]}
    assert names(t, t.selector_mask(pod(terms=[{"matchFields": [f]}]))) == ["a", "c", "d"]


def test_terms_are_ored_and_expressions_anded():
    t = table(*LABELLED)
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]},
                                   {"key": "gpu-type", "operator": "Exists"}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["d"]}]}]
    assert names(t, t.selector_mask(pod(terms=terms))) == ["a", "d"]


def test_empty_term_matches_nothing_and_selector_combines():
    t = table(*LABELLED)
    assert names(t, t.selector_mask(pod(terms=[{}]))) == []
    terms = [{"matchExpressions": [{"key": "rank", "operator": "Exists"}]}]
    assert names(t, t.selector_mask(pod({"zone": "z1"}, terms=terms))) == ["a", "c"]


# --- taints ---------------------------------------------------------------------------------

TAINTED = [node("plain"),
           node("gpu", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
           node("exec", taints=[{"key": "dedicated", "value": "infer", "effect": "NoExecute"}]),
           node("soft", taints=[{"key": "dedicated", "value": "infer", "effect": "PreferNoSchedule"}])]


@pytest.mark.parametrize("tols, expected", [
    ([], ["plain", "soft"]),
    ([{"key": "nvidia.com/gpu", "operator": "Exists"}], ["gpu", "plain", "soft"]),
    ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}], ["gpu", "plain", "soft"]),
    ([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "absent"}], ["plain", "soft"]),
    ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], ["plain", "soft"]),
    ([{"key": "dedicated", "value": "infer", "effect": "NoExecute"}], ["exec", "plain", "soft"]),
    ([{"operator": "Exists"}], ["exec", "gpu", "plain", "soft"]),            # empty key tolerates all
    ([{"operator": "Exists", "effect": "NoSchedule"}], ["gpu", "plain", "soft"]),
    ([{"key": "", "operator": "Equal", "value": "present"}], ["plain", "soft"]),
])
def test_taints_and_tolerations(tols, expected):
    t = table(*TAINTED)
    p = pod(tolerations=tols)
    assert names(t, t.taint_mask(p)[0]) == expected
    assert names(t, t.static_mask(p, ("sig", str(tols)))) == expected


def test_untolerated_counts_names_taints():
    t = table(*TAINTED)
    counts = t.untolerated_counts(pod(), np.ones(t.n, dtype=bool))
    assert counts == {"nvidia.com/gpu=present:NoSchedule": 1, "dedicated=infer:NoExecute": 1}


def test_tolerates_helper():
    assert tolerates([], "k", "v", "NoSchedule") is False
    from kai.api.k8s import Toleration
    assert tolerates([Toleration(key="k", operator="Exists")], "k", "anything", "NoExecute")
    assert not tolerates([Toleration(key="k", value="v", effect="NoSchedule")], "k", "v", "NoExecute")


# --- node conditions ----------------------------------------------------------------------

def test_cordoned_and_not_ready_excluded():
    t = table(node("ok", ready=True), node("cordoned", unschedulable=True), node("down", ready=False),
              node("noconds"))
    p = pod()
    assert names(t, t.static_mask(p, ("plain",))) == ["noconds", "ok"]
    tol = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                            "effect": "NoSchedule"}])
    assert names(t, t.static_mask(tol, ("tol",))) == ["cordoned", "noconds", "ok"]
    assert names(t, t.not_ready) == ["down"] and names(t, t.cordoned) == ["cordoned"]


def test_static_mask_cached_until_node_change():
    t = table(node("a", {"zone": "z1"}))
    p = pod({"zone": "z1"})
    m1 = t.static_mask(p, ("k",))
    assert t.static_mask(p, ("k",)) is m1
    t.upsert(node("a", {"zone": "z2"}))
    assert names(t, t.static_mask(p, ("k",))) == []


# --- updates, removal, ranks -----------------------------------------------------------------

def test_node_update_keeps_charges():
    st = ClusterState()
    st.upsert_node(node("n", cpu="8"))
    st.upsert_pod(pod(name="r", node_name="n", cpu="3", phase="Running"))
    i = st.nodes.by_name["n"].idx
    assert st.nodes.idle[CPU, i] == 5000
    st.upsert_node(node("n", cpu="16", gpu=2, labels={"new": "label"}))
    assert st.nodes.allocatable[CPU, i] == 16000
    assert st.nodes.idle[CPU, i] == 13000
    assert st.nodes.idle[GPU, i] == 2
    assert np.array_equal(st.nodes.avail[:, i], st.nodes.idle[:, i] + st.nodes.releasing[:, i])


def test_node_remove_and_readd_recharges_pods():
    st = ClusterState()
    st.upsert_node(node("n", cpu="8"))
    st.upsert_node(node("m", cpu="4"))
    st.upsert_pod(pod(name="r", node_name="n", cpu="3", phase="Running"))
    st.delete_node("n")
    assert "n" not in st.nodes.by_name
    assert st.nodes.in_use.sum() == 1
    st.upsert_node(node("n", cpu="8"))
    i = st.nodes.by_name["n"].idx
    assert st.nodes.idle[CPU, i] == 5000
    st.delete_pod("uid-r")
    assert st.nodes.idle[CPU, i] == 8000


def test_removed_slot_is_reused_and_cleared():
    t = table(node("a", {"zone": "z1"}, taints=[{"key": "k", "effect": "NoSchedule"}]), node("b"))
    idx_a = t.by_name["a"].idx
    t.remove("a")
    assert t.allocatable[:, idx_a].sum() == 0 and t.in_use[idx_a] == 0
    assert names(t, t.selector_mask(pod({"zone": "z1"}))) == []
    t.upsert(node("c"))
    assert t.by_name["c"].idx == idx_a
    assert t.by_name["c"].idx == idx_a and names(t, t.taint_mask(pod())[0]) == ["b", "c"]


def test_name_rank_is_sorted_name_order():
    t = table(node("n-3"), node("n-1"), node("n-10"), node("n-2"))
    ranked = sorted(t.nodes(), key=lambda info: t.name_rank[info.idx])
    assert [i.name for i in ranked] == ["n-1", "n-10", "n-2", "n-3"]
    t.remove("n-1")
    t.upsert(node("a-0"))
    t.refresh_rank()
    ranked = sorted(t.nodes(), key=lambda info: t.name_rank[info.idx])
    assert [i.name for i in ranked] == ["a-0", "n-10", "n-2", "n-3"]
    assert sorted(t.name_rank.tolist()) == [0, 1, 2, 3]


def test_extended_resource_widens_arrays():
    t = table(node("a"))
    t.upsert(msgspec.convert({"metadata": {"name": "b"},
                              "status": {"allocatable": {"cpu": "1", "example.com/foo": "3"}}}, Node))
    col = t.registry.column("example.com/foo", create=False)
    assert col == 5 and t.allocatable.shape == (6, 2)
    assert t.allocatable[col, t.by_name["b"].idx] == 3 and t.allocatable[col, t.by_name["a"].idx] == 0
    assert t.idle.flags.c_contiguous and t.avail.flags.c_contiguous


def test_gpu_capacity_prefers_count_label():
    t = table(node("l", {"nvidia.com/gpu.count": "4"}, gpu=8), node("u", gpu=2))
    assert t.gpu_capacity[t.by_name["l"].idx] == 4
    assert t.gpu_capacity[t.by_name["u"].idx] == 2


def _table_view(t: NodeTable) -> dict:
    """Every array, encoding and counter of a table, as plain values (order included)."""
    arrays = ("allocatable", "idle", "releasing", "avail", "gpu_capacity", "gpu_memory", "mig", "dev_used",
              "dev_alloc", "dev_rel", "dev_from_rel", "base_ok", "cordoned", "not_ready", "in_use", "_taint_bits")
    return {
        "arrays": {a: (getattr(t, a).dtype.str, getattr(t, a).tolist()) for a in arrays},
        "infos": [None if i is None else (i.name, i.idx) for i in t.infos], "by_name": list(t.by_name),
        "labels": (list(t._label_keys.items()), [c.tolist() for c in t._label_cols],
                   [list(v.items()) for v in t._label_values]),
        "taints": list(t._taints.items()), "free": list(t._free),
        "counters": (t.generation, t.layout, t._rank_dirty), "registry": list(t.registry.names),
    }


def test_upsert_many_is_the_table_of_one_upsert_at_a_time():
    """The initial list's nodes (all new: array writes gathered) leave the table that
    upserting them one by one leaves: same columns, values, label and taint ids, counters;
    a list with a node already there, or a name twice, goes one by one."""
    from kai.sim.synthetic import synthetic_nodes
    nodes = synthetic_nodes(300, seed=3, cpu_only_share=0.2, tainted_share=0.2)
    nodes[7] = node("odd", labels={"x": "1", "nvidia.com/gpu.memory": "40960"}, cpu="3",
                    taints=[{"key": "k", "value": "v", "effect": "NoExecute"},
                            {"key": "soft", "effect": "PreferNoSchedule"}], unschedulable=True, ready=False, gpu=2)
    nodes[9] = msgspec.convert({"metadata": {"name": "ext"}, "status": {"allocatable": {
        "cpu": "4", "example.com/fpga": "3", "nvidia.com/gpu": "40"}}}, Node)
    bulk, one = NodeTable(ResourceRegistry()), NodeTable(ResourceRegistry())
    bulk.upsert_many(nodes)
    for n in nodes:
        one.upsert(n)
    assert bulk.generation == len(nodes)
    got, want = _table_view(bulk), _table_view(one)
    got.pop("free"), want.pop("free")                   # one by one grows instead of taking free columns
    assert got == want
    for sel in ({"x": "1"}, {"topology.kubernetes.io/zone": "zone-1"}, {"kubernetes.io/hostname": "ext"}):
        assert bulk.selector_mask(pod(sel)).tolist() == one.selector_mask(pod(sel)).tolist()
    # a second list: some known nodes (updates) -> one by one, same as upserting them
    again = [node("odd", cpu="5"), node("new-one", gpu=1)]
    bulk.upsert_many(again)
    for n in again:
        one.upsert(n)
    got, want = _table_view(bulk), _table_view(one)
    got.pop("free"), want.pop("free")
    assert got == want


# --- the label and taint vocabularies stay bounded -----------------------------------------------

def test_nodes_replaced_under_fresh_names_and_timestamp_taints_leave_no_ids_behind():
    """A cluster that replaces nodes under fresh names (an autoscaler) and taints nodes it
    scales down with a timestamp (the cluster autoscaler's ToBeDeletedByClusterAutoscaler)
    gets a fresh label value and a fresh taint a node: once the dropped ones outnumber the
    live ones the ids are renumbered, and every mask answers as the nodes' own labels and
    taints say, for nodes added before a renumbering and after."""
    from kai.cache import node_table as nt
    t = table(*[node(f"keep-{i}", {"pool": f"p{i % 3}"}) for i in range(3)])
    to_be_deleted = "ToBeDeletedByClusterAutoscaler"
    tol_scale_down = {"key": to_be_deleted, "operator": "Exists"}

    def check(i):
        t.refresh_rank()
        for k, tols in enumerate(([], [tol_scale_down])):
            p = pod({"pool": "p1"}, tolerations=tols)
            want = sorted(info.name for info in t.infos if info is not None and info.labels.get("pool") == "p1"
                          and all(tolerates(p.spec.tolerations, x.key, x.value, x.effect) for x in info.taints))
            assert names(t, t.static_mask(p, (i, k))) == want
        newest = max((info for info in t.infos if info is not None and info.name.startswith("n-")),
                     key=lambda info: int(info.name[2:]))
        exact = pod(terms=[{"matchExpressions": [{"key": "instance-id", "operator": "In",
                                                  "values": [newest.labels["instance-id"]]}]}],
                    tolerations=[{"key": x.key, "value": x.value, "effect": x.effect} for x in newest.taints])
        assert names(t, t.static_mask(exact, (i, "exact"))) == [newest.name]
        counts = t.untolerated_counts(pod(), np.ones(t.n, dtype=bool))
        assert counts == dict(collections.Counter(
            t.taint_name((x.key, x.value, x.effect)) for info in t.infos if info is not None for x in info.taints))

    import collections
    for i in range(3000):
        name = f"n-{i}"
        labels = {"pool": f"p{i % 3}", "instance-id": f"i-{i}"}
        t.upsert(node(name, labels))
        t.upsert(node(name, labels, taints=[{"key": to_be_deleted, "value": str(1_700_000_000 + i),
                                             "effect": "NoSchedule"}]))
        if i % 400 == 200:                            # a long-lived node, tainted after renumberings
            t.upsert(node(f"late-{i}", {"pool": "p1"}, taints=[{"key": f"late-{i}", "effect": "NoSchedule"}]))
        if i >= 4:                                    # four nodes at a time, the oldest removed
            t.remove(f"n-{i - 4}")
        assert t.vocab_size() <= 2 * nt.VOCAB_MIN + 40
        if i % 97 == 0:
            check(i)
    check("end")


def test_a_reader_keeps_a_consistent_view_across_a_renumbering():
    """The renumbering makes new columns and value lists: a column and value list read before
    it still name each node's value."""
    from kai.cache import node_table as nt
    t = table(*[node(f"n-{i}", {"id": f"v-{i}"}) for i in range(nt.VOCAB_MIN)])
    col, values = t.label_column("id")
    before = {t.infos[i].name: values[col[i]] for i in range(t.n) if col[i] >= 0}
    generation = t.generation
    for i in range(nt.VOCAB_MIN // 2 + 8):
        t.remove(f"n-{i}")
        t.upsert(node(f"m-{i}", {"id": f"w-{i}"}))
    assert t.generation > generation
    assert {t.infos[i].name: values[col[i]] for i in range(len(col)) if col[i] >= 0
            and t.infos[i] is not None and t.infos[i].name.startswith("n-")} == {
        n: v for n, v in before.items() if int(n[2:]) >= nt.VOCAB_MIN // 2 + 8}
    col2, values2 = t.label_column("id")
    assert col2 is not col
    now = {t.infos[i].name: values2[col2[i]] for i in range(t.n) if col2[i] >= 0}
    assert now == {info.name: info.labels["id"] for info in t.infos if info is not None}

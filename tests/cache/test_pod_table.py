"""kai.cache.pod_table: rows follow ClusterState's charges (pods on nodes), selectors match
vectorized like one pod at a time, and the carried-term and port indexes stay exact."""
import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kai.api.k8s import LabelSelector, Node, Pod
from kai.api.selectors import compile_selector
from kai.cache.cluster_state import ClusterState


def node(name):
    return msgspec.convert({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "64", "pods": "110"}}},
                           Node)


def pod(name, node_name="", labels=None, ns="default", anti_app=None, host_port=0, phase="Running"):
    spec = {"nodeName": node_name, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
    if anti_app:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": anti_app}}, "topologyKey": "kubernetes.io/hostname"}]}}
    if host_port:
        spec["containers"][0]["ports"] = [{"containerPort": 1, "hostPort": host_port}]
    return msgspec.convert({"metadata": {"name": name, "namespace": ns, "uid": f"u-{ns}-{name}",
                                         "labels": labels or {}},
                            "spec": spec, "status": {"phase": phase if node_name else "Pending"}}, Pod)


def state():
    st_ = ClusterState()
    for n in ("n0", "n1"):
        st_.upsert_node(node(n))
    return st_


def test_rows_follow_pods_on_nodes_only():
    s = state()
    s.upsert_pod(pod("a", "n0", {"app": "x"}))
    s.upsert_pod(pod("b", labels={"app": "x"}))                 # pending: not on a node
    s.upsert_pod(pod("c", "n1", {"app": "x"}, phase="Succeeded"))
    t = s.pod_table
    assert set(t.row_of) == {"u-default-a"}
    s.delete_pod("u-default-a")
    assert len(t) == 0 and not t.rows_matching(compile_selector(LabelSelector())).any()


def test_node_deleted_drops_its_rows():
    s = state()
    s.upsert_pod(pod("a", "n0"))
    s.upsert_pod(pod("b", "n1"))
    s.delete_node("n0")
    assert set(s.pod_table.row_of) == {"u-default-b"}


def test_carried_terms_and_ports_are_counted_per_node():
    s = state()
    s.upsert_pod(pod("a", "n0", anti_app="web", host_port=80))
    s.upsert_pod(pod("b", "n0", anti_app="web"))
    s.upsert_pod(pod("c", "n1", anti_app="web", host_port=80))
    t = s.pod_table
    (ct,) = t.terms.values()
    n0, n1 = s.nodes.by_name["n0"].idx, s.nodes.by_name["n1"].idx
    assert dict(ct.nodes) == {n0: 2, n1: 1}
    assert dict(t.ports[("TCP", 80)]["0.0.0.0"]) == {n0: 1, n1: 1}
    for name in ("a", "b", "c"):
        s.delete_pod(f"u-default-{name}")
    assert t.terms == {} and t.ports == {}


def _legacy(p, value="1"):
    p.metadata.annotations = {"nvidia.com/mig-1g.10gb": value}
    return p


def test_legacy_mig_pods_are_counted_per_node_added_one_by_one_or_in_bulk():
    s = state()
    s.upsert_pod(_legacy(pod("a", "n0")))
    s.upsert_pod(_legacy(pod("b", "n0")))
    s.upsert_pod(_legacy(pod("c")))                              # pending: on no node
    s.upsert_pod(_legacy(pod("d", "n1"), value="x"))             # not an integer: not legacy
    s.upsert_pod(pod("e", "n1"))
    t = s.pod_table
    n0 = s.nodes.by_name["n0"].idx
    assert dict(t.legacy_mig) == {n0: 2}
    s.delete_pod("u-default-a")
    assert dict(t.legacy_mig) == {n0: 1}
    s.upsert_pod(pod("b", "n0"))                                 # the annotation removed
    assert dict(t.legacy_mig) == {}
    bulk = ClusterState()
    pods = [_legacy(pod(f"p{i}", f"n{i % 2}")) if i % 10 == 0 else pod(f"p{i}", f"n{i % 2}") for i in range(100)]
    bulk.load([node("n0"), node("n1")], [], pods)                  # (the add_many path: >= 64 rows)
    n0, n1 = bulk.nodes.by_name["n0"].idx, bulk.nodes.by_name["n1"].idx
    assert dict(bulk.pod_table.legacy_mig) == {n0: 10}
    bulk.delete_node("n0")
    assert dict(bulk.pod_table.legacy_mig) == {} and n1 not in bulk.pod_table.legacy_mig


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["x", "y", None]), st.sampled_from(["a", "b"]), st.booleans()),
                min_size=1, max_size=12),
       st.sampled_from([{"matchLabels": {"app": "x"}}, {"matchExpressions": [{"key": "app", "operator": "NotIn",
                                                                              "values": ["x"]}]},
                        {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}]))
def test_vectorized_match_equals_one_at_a_time(rows, sel_doc):
    s = state()
    for i, (app, ns, gone) in enumerate(rows):
        s.upsert_pod(pod(f"p{i}", "n0" if i % 2 else "n1", {"app": app} if app else {}, ns=ns))
        if gone and i % 3 == 0:
            s.delete_pod(f"u-{ns}-p{i}")
    t = s.pod_table
    sel = compile_selector(msgspec.convert(sel_doc, LabelSelector))
    got = t.rows_matching(sel) & t.rows_in_namespaces(["a"])
    want = np.zeros(t.n, dtype=bool)
    for uid, r in t.row_of.items():
        p = t.pods[r]
        want[r] = p.namespace == "a" and sel.matches(p.pod.metadata.labels)
    assert got.tolist() == want.tolist()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["default", "a", "b"]), st.booleans(),
                          st.sampled_from([None, "x", "y"]), st.sampled_from([0, 80, 81])), min_size=0, max_size=150),
       st.integers(0, 100), st.lists(st.integers(0, 99), max_size=100))
def test_add_many_is_add_one_at_a_time(rows, before, gone):
    """``add_many`` (a bulk load's or an action's rows in one go) leaves the rows, namespace
    ids, indexes of carried terms and ports, and counters that adding the same pods one by
    one leaves; on a table with free rows (pods removed) too."""
    from kai.api.pod_info import PodInfo
    from kai.api.resources import ResourceRegistry
    from kai.cache.pod_table import PodTable
    reg = ResourceRegistry()
    pods = [PodInfo(pod(f"p{i}", f"n{n}", {"app": "x"}, ns=ns, anti_app=anti, host_port=port), reg)
            for i, (n, ns, _, anti, port) in enumerate(rows)]
    for p, (_, _, deleting, _, _) in zip(pods, rows):
        p.deleting = deleting
    nodes = [n for n, *_ in rows]
    pods += [PodInfo(pod(f"f{i}", f"n{i % 2}", {}, ns="a"), reg) for i in range(64)]    # (the one-go path)
    nodes += [i % 2 for i in range(64)]
    earlier = [PodInfo(pod(f"e{i}", f"n{i % 2}", {"app": "y"}, ns="c", anti_app="x" if i % 3 else None), reg)
               for i in range(before)]
    bulk, one = PodTable(), PodTable()
    for t in (bulk, one):
        for i, p in enumerate(earlier):
            t.add(p, i % 2)
        for i in gone:
            if i < before:
                t.remove(earlier[i].uid)
    bulk.add_many(pods, nodes)
    for p, n in zip(pods, nodes):
        one.add(p, n)

    def view(t):
        return (t.n, list(t.row_of.items()), list(t.ns_ids.items()), t.node[: t.n].tolist(), t.ns[: t.n].tolist(),
                t.terminating[: t.n].tolist(), [p and p.uid for p in t.pods[: t.n]], t.generation, list(t._free),
                {k: dict(v.nodes) for k, v in t.terms.items()},
                {k: {ip: dict(c) for ip, c in v.items()} for k, v in t.ports.items()})
    assert view(bulk) == view(one)
    sel = compile_selector(LabelSelector(match_labels={"app": "x"}))
    assert bulk.rows_matching(sel).tolist() == one.rows_matching(sel).tolist()


def test_ids_of_values_and_namespaces_no_live_pod_carries_are_renumbered_away():
    """Jobs come and go, each in a namespace of its own for a while and with a ``job-name`` a
    selector asks about: the ids of values no live pod carries are dropped once they
    outnumber the live ones, and matching answers from the live pods' own labels."""
    from kai.cache import pod_table as pt
    s = state()
    t = s.pod_table
    by_job = compile_selector(msgspec.convert({"matchExpressions": [{"key": "job-name", "operator": "Exists"}]},
                                              LabelSelector))
    t.rows_matching(by_job)                               # the table keeps a job-name column from now on
    live: list[tuple[str, str, str]] = []
    for i in range(6000):
        ns, job = f"ns-{i // 10}", f"job-{i}"
        s.upsert_pod(pod(job, f"n{i % 2}", {"job-name": job}, ns=ns))
        live.append((ns, job, f"u-{ns}-{job}"))
        if len(live) > 20:
            s.delete_pod(live.pop(0)[2])
        assert t.vocab_size() <= 2 * pt.VOCAB_MIN + 64
        if i % 611 == 0 or i == 5999:
            for ns, job, uid in live[::7]:
                sel = compile_selector(msgspec.convert({"matchLabels": {"job-name": job}}, LabelSelector))
                got = t.rows_matching(sel) & t.rows_in_namespaces([ns])
                assert [t.pods[r].uid for r in np.flatnonzero(got)] == [uid]
            assert t.rows_matching(by_job).sum() == len(live)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["a", "b", "c", "d"]), st.booleans()),
                min_size=1, max_size=120))
def test_renumbered_ids_match_as_the_labels_say(steps):
    """With a renumbering every few removals, matching by label and by namespace answers as
    each live pod's own labels and namespace say."""
    import kai.cache.pod_table as pt
    old = pt.VOCAB_MIN
    pt.VOCAB_MIN = 2
    try:
        s = state()
        t = s.pod_table
        t._vocab_limit = 2
        sel_x = compile_selector(msgspec.convert({"matchLabels": {"v": "x"}}, LabelSelector))
        t.rows_matching(sel_x)
        alive: dict[str, tuple[str, str]] = {}
        for i, (v, ns, drop) in enumerate(steps):
            value = "x" if v == 0 else f"v{v}"
            s.upsert_pod(pod(f"p{i}", f"n{i % 2}", {"v": value}, ns=ns))
            alive[f"u-{ns}-p{i}"] = (value, ns)
            if drop and alive:
                gone = sorted(alive)[v % len(alive)]
                s.delete_pod(gone)
                del alive[gone]
            for value in {"x", f"v{v}"}:
                sel = compile_selector(msgspec.convert({"matchLabels": {"v": value}}, LabelSelector))
                for ns in ("a", "b"):
                    got = {t.pods[r].uid for r in np.flatnonzero(t.rows_matching(sel) & t.rows_in_namespaces([ns]))}
                    assert got == {u for u, (lv, lns) in alive.items() if lv == value and lns == ns}
    finally:
        pt.VOCAB_MIN = old

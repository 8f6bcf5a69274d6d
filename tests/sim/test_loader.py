"""kai.sim.loader: manifests -> model objects; every bad input is a LoadError naming file, document, field."""
import json

import pytest

from kai.sim.loader import LoadError, load_manifests

NODE = "kind: Node\nmetadata: {name: n0}\nstatus: {allocatable: {cpu: '4', nvidia.com/gpu: '2'}}\n"
POD = ("kind: Pod\nmetadata: {name: p0, annotations: {pod-group-name: g}}\n"
       "spec: {schedulerName: kai-scheduler, containers: [{name: c, resources: {requests: {cpu: 500m}}}]}\n")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def error_of(paths):
    with pytest.raises(LoadError) as exc:
        load_manifests(paths if isinstance(paths, list) else [paths])
    return str(exc.value)


def test_loads_kinds_and_applies_defaults(tmp_path):
    f = write(tmp_path, "c.yaml", "\n---\n".join([NODE, POD, "kind: Namespace\nmetadata: {name: ns}\n",
                                                  "kind: Queue\nmetadata: {name: q}\nspec: {}\n"]))
    m = load_manifests([f])
    assert [n.metadata.name for n in m.objects["Node"]] == ["n0"]
    p = m.objects["Pod"][0]
    assert p.metadata.namespace == "default" and p.metadata.uid
    q = m.objects["Queue"][0]
    # file order becomes creation order when timestamps are absent
    assert p.metadata.creation_timestamp < q.metadata.creation_timestamp
    assert m.skipped == [] and [n.metadata.name for n in m.objects["Namespace"]] == ["ns"]


def test_list_kind_and_json(tmp_path):
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Node", "metadata": {"name": "a"}}, {"kind": "Node", "metadata": {"name": "b"}}]}
    f = write(tmp_path, "l.json", json.dumps(doc))
    assert [n.metadata.name for n in load_manifests([f]).objects["Node"]] == ["a", "b"]
    bad = dict(doc, items=[{"kind": "Node", "metadata": {}}])
    msg = error_of(write(tmp_path, "bad.json", json.dumps(bad)))
    assert "bad.json: document 1.items[0]" in msg and "metadata.name is required" in msg


def test_unquoted_timestamps_accepted(tmp_path):
    f = write(tmp_path, "t.yaml", "kind: Pod\nmetadata: {name: p, creationTimestamp: 2024-01-01T00:00:05Z}\n")
    assert load_manifests([f]).objects["Pod"][0].metadata.creation_timestamp.startswith("2024-01-01")


def test_directory_input_reads_yaml_files_in_order(tmp_path):
    write(tmp_path, "d/b.yaml", "kind: Node\nmetadata: {name: second}\n")
    write(tmp_path, "d/a.yml", "kind: Node\nmetadata: {name: first}\n")
    write(tmp_path, "d/notes.txt", "not yaml: [")
    m = load_manifests([str(tmp_path / "d")])
    assert [n.metadata.name for n in m.objects["Node"]] == ["first", "second"]


def test_config_document_is_picked_up(tmp_path):
    f = write(tmp_path, "c.yaml", NODE + "---\nactions: allocate\ntiers: []\n")
    m = load_manifests([f])
    assert len(m.config_docs) == 1 and "document 2" in m.config_docs[0][0]


@pytest.mark.parametrize("text, needles", [
    ("kind: Node\nmetadata: {name: a\n", ["not valid YAML", "line"]),
    ("kind: Foo\nmetadata: {name: a}\n", ["document 1 (Foo a)", "unknown kind 'Foo'"]),
    ("kind: PodGroup\nmetadata: {name: g}\nspec: {minMember: '2'}\n",
     ["document 1 (PodGroup g)", "spec.minMember", "Expected `int`"]),
    (NODE + "---\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {requests: {cpu: '-1'}}}]}\n",
     ["document 2 (Pod p)", "spec.containers[0].resources.requests.cpu", "negative quantity '-1'"]),
    ("kind: Node\nmetadata: {name: n}\nstatus: {allocatable: {memory: 12XB}}\n",
     ["status.allocatable.memory", "invalid quantity '12XB'"]),
    ("kind: Node\nmetadata: {name: n}\nstatus: {allocatable: {cpu: '1e400'}}\n", ["status.allocatable.cpu", "too large"]),
    ("kind: Node\nmetadata: {labels: {}}\n", ["document 1 (Node ?)", "metadata.name is required"]),
    ("metadata: {name: x}\n", ["document 1", "missing field 'kind'"]),
    ("- a\n- b\n", ["document 1", "expected a Kubernetes object"]),
    ("kind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n", ["spec.containers", "Expected `array`"]),
    ("kind: Pod\nmetadata: {name: p}\nspec: {containers: [5]}\n", ["spec.containers[0]", "Expected `object`"]),
    ("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: 5}]}\n", ["spec.containers[0].resources"]),
    ("kind: Pod\nmetadata: {name: p, namespace: 5}\n", ["metadata.namespace", "Expected `str`"]),
    ("kind: Node\nmetadata: {name: p}\nstatus: 5\n", ["(Node p)", "status: Expected `object`"]),
    ("kind: Node\nmetadata: 5\n", ["metadata must be a mapping"]),
    ("kind: Queue\nmetadata: {name: q}\nspec: {resources: {gpu: {quota: lots}}}\n", ["spec.resources.gpu.quota"]),
    ("kind: List\nitems: 5\n", ["items must be a list"]),
])
def test_bad_documents_name_file_document_and_field(tmp_path, text, needles):
    f = write(tmp_path, "bad.yaml", text)
    msg = error_of(f)
    assert msg.startswith(f), msg
    for n in needles:
        assert n in msg, (n, msg)


def test_bad_file_inside_directory_named(tmp_path):
    write(tmp_path, "d/ok.yaml", NODE)
    write(tmp_path, "d/sub/bad.yaml", "kind: Foo\nmetadata: {name: a}\n")
    msg = error_of(str(tmp_path / "d"))
    assert "sub/bad.yaml: document 1" in msg


def test_nonexistent_path(tmp_path):
    msg = error_of(str(tmp_path / "missing.yaml"))
    assert "missing.yaml: no such file or directory" in msg


def test_invalid_json_and_binary(tmp_path):
    assert "not valid JSON" in error_of(write(tmp_path, "x.json", "[1,2"))
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00kind")
    assert "not UTF-8" in error_of(str(p))


def test_keep_going_lists_every_bad_object_and_loads_the_rest(tmp_path):
    f = write(tmp_path, "mix.yaml", "\n---\n".join([
        NODE,
        "kind: Node\nmetadata: {name: bad-q}\nstatus: {allocatable: {cpu: lots}}\n",
        "kind: Node\nmetadata: {name: bad-l, labels: {nvidia.com/gpu.memory: '1e309'}}\n",
        "kind: Foo\nmetadata: {name: x}\n",
        "kind: PodGroup\nmetadata: {name: g}\nspec: {minMember: '2'}\n",
        POD]))
    with pytest.raises(LoadError):
        load_manifests([f])                       # strict by default: the first bad object
    m = load_manifests([f], keep_going=True)
    assert [n.metadata.name for n in m.objects["Node"]] == ["n0"]
    assert [p.metadata.name for p in m.objects["Pod"]] == ["p0"]
    assert len(m.errors) == 4, m.errors
    for needle in ("document 2 (Node bad-q): status.allocatable.cpu: invalid quantity 'lots'",
                   "document 3 (Node bad-l): metadata.labels[nvidia.com/gpu.memory]: '1e309'",
                   "document 4 (Foo x): unknown kind 'Foo'", "document 5 (PodGroup g): spec.minMember"):
        assert any(needle in e for e in m.errors), (needle, m.errors)


def test_duplicates_warned_and_first_copy_kept(tmp_path):
    other = NODE.replace("cpu: '4'", "cpu: '64'")
    f = write(tmp_path, "dup.yaml", "\n---\n".join([NODE, POD, other, POD]))
    m = load_manifests([f])
    assert len(m.objects["Node"]) == 1 and m.objects["Node"][0].status.allocatable["cpu"] == "4"
    assert len(m.objects["Pod"]) == 1
    assert len(m.warnings) == 2
    assert "document 3 (Node n0): duplicate of " in m.warnings[0] and "document 1" in m.warnings[0]
    assert "document 4 (Pod p0): duplicate of" in m.warnings[1]


def test_pod_on_unknown_node_warned_and_left_out(tmp_path):
    bound = POD.replace("p0", "p1").replace("schedulerName: kai-scheduler", "schedulerName: kai-scheduler, nodeName: gone")
    f = write(tmp_path, "u.yaml", "\n---\n".join([NODE, POD, bound]))
    m = load_manifests([f])
    assert [p.metadata.name for p in m.objects["Pod"]] == ["p0"]
    assert m.warnings == ["Pod default/p1 is bound to node 'gone', which no (valid) manifest defines: "
                          "the pod is left out (it takes no capacity and no queue share)"]
# --- DRA manifests ---------------------------------------------------------------------------

DRA_MANIFEST = """
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: gpu.example.com}
spec:
  selectors: [{cel: {expression: 'device.driver == "gpu.example.com"'}}]
---
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata: {name: node-1-gpus}
spec:
  driver: gpu.example.com
  nodeName: node-1
  pool: {name: node-1, generation: 1, resourceSliceCount: 1}
  devices:
  - name: gpu-0
    attributes: {model: {string: A100}}
    capacity: {memory: {value: 80Gi}}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: one-gpu, namespace: team-a}
spec:
  spec:
    devices:
      requests: [{name: gpu, exactly: {deviceClassName: gpu.example.com}}]
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: shared}
spec:
  devices:
    requests: [{name: gpu, exactly: {deviceClassName: gpu.example.com, count: 2}}]
"""


def test_loads_dra_kinds(tmp_path):
    from kai.sim.loader import load_manifests
    f = tmp_path / "dra.yaml"
    f.write_text(DRA_MANIFEST)
    m = load_manifests([str(f)])
    assert [o.metadata.name for o in m.objects["DeviceClass"]] == ["gpu.example.com"]
    assert m.objects["ResourceSlice"][0].spec.devices[0].attributes["model"].string == "A100"
    assert m.objects["ResourceClaimTemplate"][0].metadata.namespace == "team-a"
    assert m.objects["ResourceClaim"][0].metadata.namespace == "default"
    assert m.objects["ResourceClaim"][0].spec.devices.requests[0].exactly.count == 2


def test_invalid_dra_manifest_names_file_document_and_field(tmp_path):
    import pytest
    from kai.sim.loader import LoadError, load_manifests
    f = tmp_path / "bad.yaml"
    f.write_text(DRA_MANIFEST.replace("count: 2", "count: 0"))
    with pytest.raises(LoadError, match=r"bad.yaml: document 4 \(ResourceClaim shared\): "
                                        r"spec.devices.requests\[0\].exactly.count: must be at least 1"):
        load_manifests([str(f)])


STORAGE = """
kind: StorageClass
metadata: {name: local}
provisioner: kubernetes.io/no-provisioner
---
kind: PersistentVolume
metadata: {name: pv0}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], storageClassName: local}
---
kind: PersistentVolume
metadata: {name: pv1}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], claimRef: {namespace: default, name: c1}}
---
kind: PersistentVolumeClaim
metadata: {name: c0}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
kind: PersistentVolumeClaim
metadata: {name: c1}
spec: {accessModes: [ReadWriteOnce], volumeName: pv1}
---
kind: CSINode
metadata: {name: n0}
spec: {drivers: [{name: d, nodeID: n0, allocatable: {count: 3}}]}
---
kind: ConfigMap
metadata: {name: cfg}
data: {big: value}
"""


def test_loads_storage_kinds_with_api_defaults(tmp_path):
    m = load_manifests([write(tmp_path, "s.yaml", STORAGE)])
    (sc,) = m.objects["StorageClass"]
    assert sc.volume_binding_mode == "Immediate"                # the API server's default
    pv0, pv1 = m.objects["PersistentVolume"]
    assert (pv0.status.phase, pv1.status.phase) == ("Available", "Bound")   # as the PV controller sets them
    c0, c1 = m.objects["PersistentVolumeClaim"]
    assert c0.metadata.namespace == "default" and (c0.status.phase, c1.status.phase) == ("Pending", "Bound")
    assert m.objects["CSINode"][0].spec.drivers[0].allocatable.count == 3
    assert m.objects["ConfigMap"][0].metadata.name == "cfg" and m.skipped == []


@pytest.mark.parametrize("text,needle", [
    ("kind: PersistentVolume\nmetadata: {name: v}\nspec: {capacity: {storage: lots}, accessModes: [ReadWriteOnce]}\n",
     "(PersistentVolume v): spec.capacity.storage: invalid quantity 'lots'"),
    ("kind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [Sometimes], "
     "resources: {requests: {storage: 1Gi}}}\n",
     "(PersistentVolumeClaim c): spec.accessModes[0]: unknown access mode 'Sometimes'"),
    ("kind: StorageClass\nmetadata: {name: s}\nprovisioner: p\nvolumeBindingMode: Eventually\n",
     "(StorageClass s): volumeBindingMode: 'Eventually' is not one of Immediate, WaitForFirstConsumer"),
    ("kind: CSINode\nmetadata: {name: n}\nspec: {drivers: [{name: d, allocatable: {count: x}}]}\n",
     "(CSINode n): spec.drivers[0].allocatable.count: Expected `int | null`"),
])
def test_invalid_storage_manifest_names_file_document_and_field(tmp_path, text, needle):
    msg = error_of(write(tmp_path, "bad.yaml", text))
    assert "bad.yaml: document 1" in msg and needle in msg, msg

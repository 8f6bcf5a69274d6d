"""A node-by-node reference of kube-scheduler's volume filters (v1.34), for the property tests.

Written straight from the upstream functions, one pod and one node at a time, with no masks,
no caches and no session ledger: ``World.filter(pod, node)`` runs VolumeBinding's PreFilter +
FindPodVolumes (checkBoundClaims, findMatchingVolumes with FindMatchingVolume, and
checkVolumeProvisions), VolumeZone, VolumeRestrictions (ReadWriteOncePod) and NodeVolumeLimits
(CSI), and returns the volume decisions in ``kai simulate``'s report format.
``World.assume`` is kube-scheduler's AssumePodVolumes: the PV's claimRef is set to the claim, a
provisioned claim gets the selected-node annotation, and the pod runs on the node.
"""
from __future__ import annotations

import copy
from decimal import Decimal

from kai.api.resources import parse_quantity

HOST = "kubernetes.io/hostname"
SELECTED = "volume.kubernetes.io/selected-node"
ZONE_KEYS = ["failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
             "topology.kubernetes.io/zone", "topology.kubernetes.io/region"]
GA = {"failure-domain.beta.kubernetes.io/zone": "topology.kubernetes.io/zone",
      "failure-domain.beta.kubernetes.io/region": "topology.kubernetes.io/region"}


def _size(q) -> Decimal:
    return parse_quantity(q) if q is not None else Decimal(0)


def _match_expr(e: dict, labels: dict) -> bool:
    key, op, values = e["key"], e["operator"], e.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            v, b = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return v > b if op == "Gt" else v < b
    return False


def check_node_affinity(pv: dict, labels: dict) -> bool:
    """volume.CheckNodeAffinity: terms evaluated against a node that has only labels."""
    req = ((pv["spec"].get("nodeAffinity") or {}).get("required"))
    if req is None:
        return True
    for term in req.get("nodeSelectorTerms") or []:
        exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not fields:
            continue
        if all(_match_expr(e, labels) for e in exprs) and \
                all(f["key"] == "metadata.name" and f["operator"] == "NotIn" for f in fields):
            return True
    return False


def selector_matches(sel: dict | None, labels: dict) -> bool:
    if sel is None:
        return True
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    return all(_match_expr(e, labels) for e in sel.get("matchExpressions") or [])


class World:
    """Nodes, storage objects and pods as plain dicts."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}          # name -> labels
        self.classes: dict[str, dict] = {}
        self.pvs: dict[str, dict] = {}
        self.claims: dict[str, dict] = {}         # ns/name
        self.csinodes: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}           # name -> pod (namespace default)
        self.running: dict[str, str] = {}         # pod name -> node
        self.decided: list[tuple[str, str]] = []  # (claim key, pv) decisions made by assume
        self.initially_running: set[str] = set()

    @classmethod
    def from_docs(cls, docs: list[dict]) -> World:
        w = cls()
        for d in copy.deepcopy(docs):
            kind, meta = d["kind"], d["metadata"]
            if kind == "Node":
                w.nodes[meta["name"]] = {HOST: meta["name"], **(meta.get("labels") or {})}
            elif kind == "StorageClass":
                d.setdefault("volumeBindingMode", "Immediate")
                w.classes[meta["name"]] = d
            elif kind == "PersistentVolume":
                d.setdefault("status", {"phase": "Bound" if d["spec"].get("claimRef") else "Available"})
                w.pvs[meta["name"]] = d
            elif kind == "PersistentVolumeClaim":
                meta.setdefault("namespace", "default")
                d.setdefault("status", {"phase": "Bound" if d["spec"].get("volumeName") else "Pending"})
                w.claims[f"{meta['namespace']}/{meta['name']}"] = d
            elif kind == "CSINode":
                w.csinodes[meta["name"]] = d
            elif kind == "Pod":
                w.pods[meta["name"]] = d
                if d["spec"].get("nodeName"):
                    w.running[meta["name"]] = d["spec"]["nodeName"]
                    w.initially_running.add(meta["name"])
        return w

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def claim_class(pvc: dict) -> str:
        return pvc["spec"].get("storageClassName") or ""

    @staticmethod
    def fully_bound(pvc: dict) -> bool:
        return bool(pvc["spec"].get("volumeName")) and (
            "pv.kubernetes.io/bind-completed" in (pvc["metadata"].get("annotations") or {})
            or pvc["status"].get("phase") == "Bound")

    @staticmethod
    def bound_to(pv: dict, key: str) -> bool:
        ref = pv["spec"].get("claimRef")
        return ref is not None and f"{ref.get('namespace') or 'default'}/{ref['name']}" == key

    def pod_claims(self, pod: dict) -> list[str]:
        out = []
        ns = pod["metadata"].get("namespace") or "default"
        for v in pod["spec"].get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                out.append(f"{ns}/{v['persistentVolumeClaim']['claimName']}")
        return out

    def find_matching_volume(self, pvc: dict, key: str, labels: dict, excluded: set) -> str | None:
        """volume.FindMatchingVolume (delayBinding, a node given, VolumeAttributesClass on)."""
        request = _size(pvc["spec"]["resources"]["requests"].get("storage"))
        cls = self.claim_class(pvc)
        smallest, smallest_size = None, None
        for name in sorted(n for n, pv in self.pvs.items() if (pv["spec"].get("storageClassName") or "") == cls):
            pv = self.pvs[name]
            if name in excluded:
                continue
            if pv["spec"].get("claimRef") is not None and not self.bound_to(pv, key):
                continue
            size = _size(pv["spec"]["capacity"]["storage"])
            if size < request:
                continue
            if (pvc["spec"].get("volumeMode") or "Filesystem") != (pv["spec"].get("volumeMode") or "Filesystem"):
                continue
            affinity_ok = check_node_affinity(pv, labels)
            if self.bound_to(pv, key):
                return name if affinity_ok else None
            if pv["status"].get("phase") != "Available":
                continue
            if not selector_matches(pvc["spec"].get("selector"), pv["metadata"].get("labels") or {}):
                continue
            if not affinity_ok:
                continue
            if not set(pvc["spec"]["accessModes"]) <= set(pv["spec"]["accessModes"]):
                continue
            if smallest is None or smallest_size > size:
                smallest, smallest_size = name, size
        return smallest

    def can_provision(self, pvc: dict, labels: dict) -> bool:
        sc = self.classes.get(self.claim_class(pvc))
        if sc is None or sc["provisioner"] in ("", "kubernetes.io/no-provisioner"):
            return False
        terms = sc.get("allowedTopologies") or []
        if not terms:
            return True
        return any(t.get("matchLabelExpressions") and all(
            r["key"] in labels and labels[r["key"]] in r["values"] for r in t["matchLabelExpressions"])
            for t in terms)

    def csi_name(self, key: str) -> tuple[str, str] | None:
        pvc = self.claims.get(key)
        if pvc is None:
            return None
        name = pvc["spec"].get("volumeName")
        if name and name in self.pvs:
            csi = self.pvs[name]["spec"].get("csi")
            return (csi["driver"], f"{csi['driver']}/{csi['volumeHandle']}") if csi else None
        sc = self.classes.get(self.claim_class(pvc))
        return (sc["provisioner"], f"{sc['provisioner']}/unbound-{key}") if sc else None

    # ------------------------------------------------------------------ the filters
    def filter(self, pod_name: str, node: str) -> tuple[bool, list[dict]]:
        ok, plan, _ = self._filter(pod_name, node)
        return ok, plan

    def reasons(self, pod_name: str, node: str) -> str:
        return self._filter(pod_name, node)[2]

    def _filter(self, pod_name: str, node: str) -> tuple[bool, list[dict], str]:
        pod, labels = self.pods[pod_name], self.nodes[node]
        keys = list(dict.fromkeys(self.pod_claims(pod)))
        # VolumeBinding PreFilter
        bound, delay = [], []
        for key in keys:
            pvc = self.claims.get(key)
            if pvc is None:
                return False, [], f"claim {key} not found"
            if pvc["status"].get("phase") == "Lost":
                return False, [], "lost"
            if self.fully_bound(pvc):
                bound.append(key)
                continue
            sc = self.classes.get(self.claim_class(pvc))
            if sc is not None and sc["volumeBindingMode"] == "WaitForFirstConsumer" and not pvc["spec"].get("volumeName"):
                delay.append(key)
            else:
                return False, [], f"unbound immediate {key}"
        # VolumeRestrictions: ReadWriteOncePod used by another pod
        for key in keys:
            if "ReadWriteOncePod" in self.claims[key]["spec"]["accessModes"]:
                if any(key in self.pod_claims(self.pods[p]) for p in self.running if p != pod_name):
                    return False, [], f"RWOP {key}"
        # VolumeBinding Filter: bound claims
        for key in bound:
            pv = self.pvs.get(self.claims[key]["spec"]["volumeName"])
            if pv is None:
                return False, [], "pv missing"
            if not check_node_affinity(pv, labels):
                return False, [], f"node affinity of {key}"
        # unbound delayed claims (claims sorted by size, stable)
        plan: list[dict] = []
        delay.sort(key=lambda k: _size(self.claims[k]["spec"]["resources"]["requests"].get("storage")))
        chosen: set = set()
        provision = []
        for key in delay:
            pvc = self.claims[key]
            sel = (pvc["metadata"].get("annotations") or {}).get(SELECTED)
            if sel is not None:
                if sel != node:
                    return False, [], f"{key} selected {sel}"
                provision.append(key)
                continue
            got = self.find_matching_volume(pvc, key, labels, chosen)
            if got is None:
                provision.append(key)
            else:
                chosen.add(got)
                plan.append({"claim": key, "volume": got})
        for key in provision:
            if not self.can_provision(self.claims[key], labels):
                return False, [], f"cannot provision {key}"
            plan.append({"claim": key, "provision": node})
        # kai reports decisions in claim order (by size, stable); rebuild that order
        order = {k: i for i, k in enumerate(delay)}
        plan.sort(key=lambda p: order[p["claim"]])
        # VolumeZone: claims that name a PV
        if any(k in labels for k in ZONE_KEYS):
            for key in keys:
                name = self.claims[key]["spec"].get("volumeName")
                if not name:
                    continue
                pv_labels = self.pvs[name]["metadata"].get("labels") or {}
                for k in ZONE_KEYS:
                    if k in pv_labels:
                        allowed = {z.strip() for z in pv_labels[k].split("__")}
                        v = labels.get(k, labels.get(GA.get(k, k)))
                        if v is None or v not in allowed:
                            return False, [], f"zone {k}"
        # NodeVolumeLimits
        limits = {}
        cn = self.csinodes.get(node)
        for d in (cn or {}).get("spec", {}).get("drivers", []):
            if (d.get("allocatable") or {}).get("count") is not None:
                limits[d["name"]] = d["allocatable"]["count"]
        new = {u: drv for drv, u in filter(None, (self.csi_name(k) for k in keys))}
        if new and limits:
            attached = {}
            for p, n in self.running.items():
                if n == node:
                    for drv, u in filter(None, (self.csi_name(k) for k in self.pod_claims(self.pods[p]))):
                        attached[u] = drv
            for u in attached:
                new.pop(u, None)
            count: dict[str, int] = {}
            for drv in attached.values():
                count[drv] = count.get(drv, 0) + 1
            per: dict[str, int] = {}
            for drv in new.values():
                per[drv] = per.get(drv, 0) + 1
            for drv, c in per.items():
                if drv in limits and count.get(drv, 0) + c > limits[drv]:
                    return False, [], f"csi limit {drv}"
        return True, plan, ""

    # ------------------------------------------------------------------ assume / invariants
    def assume(self, pod_name: str, node: str, plan: list[dict]) -> None:
        for p in plan:
            key = p["claim"]
            if "volume" in p:
                ns, name = key.split("/")
                self.pvs[p["volume"]]["spec"]["claimRef"] = {"namespace": ns, "name": name}
                self.decided.append((key, p["volume"]))
            else:
                self.claims[key]["metadata"].setdefault("annotations", {})[SELECTED] = node
        self.running[pod_name] = node

    def csi_names(self, node: str, driver: str, pods) -> set[str]:
        return {u for p in pods if self.running.get(p) == node
                for drv, u in filter(None, (self.csi_name(k) for k in self.pod_claims(self.pods[p]))) if drv == driver}

    def check_invariants(self) -> None:
        """Over everything assumed: a PV serves one claim; each running pod's PVs admit its node;
        a ReadWriteOncePod claim has one user; CSI limits hold (or, where the pods running from the
        start exceed them already, placements added no volume)."""
        owner: dict[str, str] = {}
        for key, pv in self.decided:
            assert owner.setdefault(pv, key) == key, f"PV {pv} given to {owner[pv]} and {key}"
        for p, node in self.running.items():
            for key in self.pod_claims(self.pods[p]):
                pvc = self.claims[key]
                name = pvc["spec"].get("volumeName") or next((pv for k, pv in self.decided if k == key), None)
                if name:
                    assert check_node_affinity(self.pvs[name], self.nodes[node]), (p, node, name)
                elif (pvc["metadata"].get("annotations") or {}).get(SELECTED) is not None:
                    assert pvc["metadata"]["annotations"][SELECTED] == node, (p, key)
                    assert self.can_provision(pvc, self.nodes[node]), (p, key)
                if "ReadWriteOncePod" in pvc["spec"]["accessModes"]:
                    users = [q for q in self.running if key in self.pod_claims(self.pods[q])]
                    assert len(users) == 1, (key, users)
        for node in self.nodes:
            cn = self.csinodes.get(node)
            for d in (cn or {}).get("spec", {}).get("drivers", []):
                limit = (d.get("allocatable") or {}).get("count")
                if limit is None:
                    continue
                names = self.csi_names(node, d["name"], self.running)
                before = self.csi_names(node, d["name"], self.initially_running)
                assert len(names) <= max(limit, len(before)) and (len(before) <= limit or names == before), \
                    (node, names, limit)

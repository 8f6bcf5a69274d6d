#!/usr/bin/env python3
"""Turn a dump of KAI's action test tables (JSON lines) into scenario cases (README format).

How the dump is made (see COVERAGE.md): KAI's ``test_utils.BuildSession`` is given a hook,
``tools/kai_dump_hook.go`` here, that writes every ``TestTopologyBasic`` it receives -- as
the Go test built it, before KAI's builder touches it -- to the file named by ``KAI_DUMP``,
together with the calling test file and function, the expected statuses as names, the
input task states as names and each job's sub-group tree. Then::

    KAI_DUMP=/tmp/kai-tables.jsonl go test -count=1 ./pkg/scheduler/actions/{allocate,consolidation,preempt,reclaim,stalegangeviction}/
    python tests/scenarios/from_kai_dump.py /tmp/kai-tables.jsonl --commit <KAI commit> --append

``--append`` adds to ``kai/<area>.yaml`` every case whose ``(go file, Name)`` is not there
yet (cases already translated by hand are kept as they are); without it the new cases are
printed. The translation is mechanical: every field the Go test sets is carried over, and
nothing is judged or dropped except the one case listed in ``SKIP`` (it has no
expectations).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runner  # noqa: E402

#: (go file, test function) -> the action the Go test runs after BuildSession
ACTION_OF_DIR = {"allocate": "allocate", "consolidation": "consolidation", "preempt": "preempt",
                 "reclaim": "reclaim", "stalegangeviction": "stalegangeviction",
                 "integration": "allocate, consolidation, reclaim, preempt, stalegangeviction"}
#: test functions whose cases carry no expectation (nothing to compare)
SKIP = {"TestHandleElasticJobCommitFailure"}
#: the go-file abbreviations used in case names
AREA = {"allocate": "allocate", "consolidation": "consolidation", "preempt": "preempt",
        "reclaim": "reclaim", "stalegangeviction": "stalegangeviction", "integration": "integration"}


def _num(x):
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def _dur(ns: int) -> str:
    """Go time.Duration (nanoseconds) -> a Go duration string."""
    if ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:60].rstrip("-") or "case"


def _constraint(tc: dict | None) -> dict | None:
    if not tc:
        return None
    out = {}
    if tc.get("Topology"):
        out["topology"] = tc["Topology"]
    if tc.get("RequiredLevel"):
        out["requiredLevel"] = tc["RequiredLevel"]
    if tc.get("PreferredLevel"):
        out["preferredLevel"] = tc["PreferredLevel"]
    return out or None


def _task(t: dict, state: str) -> dict:
    out: dict = {"state": state}
    if t.get("NodeName"):
        out["nodeName"] = t["NodeName"]
    if t.get("GPUGroups"):
        out["gpuGroups"] = list(t["GPUGroups"])
    if t.get("SubGroupName"):
        out["subGroupName"] = t["SubGroupName"]
    if t.get("RequiredGPUs") is not None:
        out["requiredGPUs"] = t["RequiredGPUs"]
    if t.get("NodeAffinityNames"):
        out["nodeAffinityNames"] = list(t["NodeAffinityNames"])
    if t.get("PodAffinityLabels"):
        out["podAffinityLabels"] = dict(t["PodAffinityLabels"])
    if t.get("PodAffinityTopologyKey"):
        out["podAffinityTopologyKey"] = t["PodAffinityTopologyKey"]
    if t.get("PodAntiAffinityTopologyKey"):
        out["podAntiAffinityTopologyKey"] = t["PodAntiAffinityTopologyKey"]
    if t.get("RequiredMigInstances"):
        out["requiredMigInstances"] = dict(t["RequiredMigInstances"])
    if t.get("Priority") is not None:
        out["priority"] = t["Priority"]
    if t.get("IsLegacyMigTask"):
        out["isLegacyMigTask"] = True
    if t.get("ResourceClaimNames"):
        out["resourceClaimNames"] = list(t["ResourceClaimNames"])
    if t.get("ResourceClaimTemplates"):
        out["resourceClaimTemplates"] = dict(t["ResourceClaimTemplates"])
    return out


def _subgroups(job: dict, tree: list[dict] | None) -> dict:
    """minAvailable / subGroups / topologyConstraint for the job from the dumped tree."""
    n_tasks = len(job.get("Tasks") or [])
    if not tree:
        return {}
    root = tree[0]
    out: dict = {}
    tc = _constraint(root.get("topology"))
    if tc:
        out["topologyConstraint"] = tc
    rest = tree[1:]
    if not rest:
        return out                       # root only: the default pod set of all tasks
    if len(rest) == 1 and rest[0]["podSet"] and rest[0]["name"] == "default" and not rest[0].get("topology"):
        if rest[0]["minAvailable"] != n_tasks:
            out["minAvailable"] = rest[0]["minAvailable"]
        return out
    subs = []
    for sg in rest:
        d: dict = {"name": sg["name"]}
        if sg.get("parent") and sg["parent"] != root["name"]:
            d["parent"] = sg["parent"]
        if sg["podSet"]:
            d["minAvailable"] = sg["minAvailable"]
        c = _constraint(sg.get("topology"))
        if c:
            d["topologyConstraint"] = c
        subs.append(d)
    out["subGroups"] = subs
    return out


def _job(j: dict, states: list[str], tree) -> dict:
    out: dict = {"name": j["Name"]}
    if j.get("Namespace"):
        out["namespace"] = j["Namespace"]
    out["queue"] = j.get("QueueName", "")
    out["priority"] = j.get("Priority", 0)
    if j.get("Preemptibility"):
        out["preemptibility"] = j["Preemptibility"]
    for src, dst in (("RequiredGPUsPerTask", "requiredGPUsPerTask"), ("RequiredCPUsPerTask", "requiredCPUsPerTask"),
                     ("RequiredMemoryPerTask", "requiredMemoryPerTask"), ("RequiredGpuMemory", "requiredGpuMemory"),
                     ("JobAgeInMinutes", "jobAgeInMinutes")):
        if j.get(src):
            out[dst] = _num(j[src])
    if j.get("RequiredMultiFractionDevicesPerTask") is not None:
        out["requiredMultiFractionDevicesPerTask"] = j["RequiredMultiFractionDevicesPerTask"]
    for src, dst in (("IsBestEffortJob", "isBestEffortJob"), ("DeleteJobInTest", "deleteJobInTest"),
                     ("JobNotReadyForSsn", "jobNotReadyForSsn")):
        if j.get(src):
            out[dst] = True
    if j.get("StaleDuration") is not None:
        out["staleDuration"] = _dur(j["StaleDuration"])
    out.update(_subgroups(j, tree))
    out["tasks"] = [_task(t, s) for t, s in zip(j.get("Tasks") or [], states)]
    return out


def _result(r: dict, status: str) -> dict:
    out: dict = {"status": status}
    if r.get("NodeName"):
        out["nodeName"] = r["NodeName"]
    out["gpusRequired"] = _num(r.get("GPUsRequired", 0))
    for src, dst in (("GPUsAccepted", "gpusAccepted"), ("MilliCpuRequired", "milliCpuRequired"),
                     ("MemoryRequired", "memoryRequired")):
        if r.get(src):
            out[dst] = _num(r[src])
    if r.get("GPUGroups"):
        out["gpuGroups"] = list(r["GPUGroups"])
    if r.get("DontValidateGPUGroup"):
        out["dontValidateGPUGroup"] = True
    if r.get("LastStartTimestampOlderThan") is not None:
        out["lastStartTimestampOlderThan"] = _dur(r["LastStartTimestampOlderThan"])
    if r.get("ExpectedErrorMessage"):
        out["expectedErrorMessage"] = r["ExpectedErrorMessage"]
    return out


def _queue(q: dict) -> dict:
    out: dict = {"name": q["Name"]}
    if q.get("ParentQueue"):
        out["parentQueue"] = q["ParentQueue"]
    if q.get("Priority") is not None:
        out["priority"] = q["Priority"]
    for src, dst in (("DeservedGPUs", "deservedGPUs"), ("MaxAllowedGPUs", "maxAllowedGPUs"),
                     ("GPUOverQuotaWeight", "gpuOverQuotaWeight")):
        if q.get(src):
            out[dst] = _num(q[src])
    for src, dst in (("DeservedCPUs", "deservedCPUs"), ("DeservedMemory", "deservedMemory"),
                     ("MaxAllowedCPUs", "maxAllowedCPUs"), ("MaxAllowedMemory", "maxAllowedMemory")):
        if q.get(src) is not None:
            out[dst] = _num(q[src])
    if q.get("V1"):
        out["v1"] = True
    return out


def _department(d: dict) -> dict:
    out: dict = {"name": d["Name"]}
    for src, dst in (("DeservedGPUs", "deservedGPUs"), ("MaxAllowedGPUs", "maxAllowedGPUs")):
        if d.get(src):
            out[dst] = _num(d[src])
    for src, dst in (("MaxAllowedCPUs", "maxAllowedCPUs"), ("MaxAllowedMemory", "maxAllowedMemory")):
        if d.get(src) is not None:
            out[dst] = _num(d[src])
    return out


def _node(n: dict) -> dict:
    out: dict = {}
    for src, dst in (("GPUs", "gpus"), ("GPUName", "gpuName"), ("MigStrategy", "migStrategy"),
                     ("CPUMemory", "cpuMemory"), ("GPUMemory", "gpuMemory"), ("CPUMillis", "cpuMillis")):
        if n.get(src):
            out[dst] = _num(n[src])
    if n.get("MigInstances"):
        out["migInstances"] = dict(n["MigInstances"])
    if n.get("GpuMemorySynced") is not None:
        out["gpuMemorySynced"] = n["GpuMemorySynced"]
    if n.get("MaxTaskNum") is not None:
        out["maxTaskNum"] = n["MaxTaskNum"]
    if n.get("Labels"):
        out["labels"] = dict(n["Labels"])
    return out


def _tags(case: dict) -> list[str]:
    tags = set()
    jobs = case["jobs"]
    for j in jobs:
        g = j.get("requiredGPUsPerTask", 0)
        if isinstance(g, float) and not g.is_integer():
            tags.add("gpu-sharing")
        if j.get("requiredGpuMemory"):
            tags.add("gpu-memory")
        if j.get("requiredMultiFractionDevicesPerTask"):
            tags.add("multi-fraction")
        if j.get("subGroups"):
            tags.add("subgroups")
        if j.get("topologyConstraint") or any(s.get("topologyConstraint") for s in j.get("subGroups") or []):
            tags.add("topology")
        n = len(j["tasks"])
        m = j.get("minAvailable", n)
        if m < n:
            tags.add("elastic")
        if n > 1:
            tags.add("gang")
        if j.get("isBestEffortJob"):
            tags.add("best-effort")
        if j.get("deleteJobInTest"):
            tags.add("deleting")
        if j.get("jobNotReadyForSsn"):
            tags.add("not-ready")
        for t in j["tasks"]:
            if t.get("requiredMigInstances"):
                tags.add("mig")
            if t.get("podAffinityTopologyKey") or t.get("podAntiAffinityTopologyKey"):
                tags.add("pod-affinity")
            if t.get("nodeAffinityNames"):
                tags.add("node-affinity")
            if t.get("priority") is not None:
                tags.add("task-order")
            if t.get("resourceClaimNames") or t.get("resourceClaimTemplates"):
                tags.add("dra")
    if any(n.get("migStrategy") for n in case["nodes"].values()):
        tags.add("mig")
    if case.get("departments") or case.get("disableDefaultDepartment"):
        tags.add("hierarchy")
    if any(q.get("maxAllowedGPUs") or q.get("maxAllowedCPUs") is not None for q in case["queues"]):
        tags.add("max-allowed")
    if any(q.get("deservedCPUs") is not None or q.get("deservedMemory") is not None for q in case["queues"]):
        tags.add("drf")
    if case.get("schedulerConf"):
        tags.add("config")
    if case.get("topologies"):
        tags.add("topology")
    if not any(j.get("requiredGPUsPerTask") or j.get("requiredGpuMemory") for j in jobs) and \
            not any(t.get("requiredGPUs") for j in jobs for t in j["tasks"]):
        tags.add("cpu-only")
    tags.add({"allocate": "", "consolidation": "consolidation", "preempt": "preempt", "reclaim": "reclaim",
              "stalegangeviction": "stale-gang"}.get(case["actions"], "") or "allocate")
    tags.discard("allocate")
    return sorted(tags)


def convert(rec: dict, commit: str) -> tuple[str, dict] | None:
    func = rec["func"].rsplit(".", 1)[-1]
    if func in SKIP:
        return None
    rel = rec["file"].split("/pkg/scheduler/actions/", 1)[1]
    area = rel.split("/", 1)[0]
    gofile = rel.split("/", 1)[1]
    t = rec["topology"]
    rounds = rec.get("rounds")
    if rounds is not None:
        # integration_tests/<dir>/<file>: every action per round, results fed back
        area = "integration"                  # gofile stays relative to integration_tests/
        if t.get("DeviceClasses") or t.get("ResourceSlices") or t.get("ResourceClaims"):
            return None                   # DRA objects: not expressible in this format yet
    if not t.get("Name"):
        # stalegangeviction_test.go names its cases outside the topology; all of them are in
        # stalegangeviction.yaml already, translated by hand from a newer revision
        return None
    statuses = rec["statuses"]
    case: dict = {"name": "", "source": f"{gofile}: {t['Name']}",
                  "actions": ACTION_OF_DIR[area]}
    if rounds is not None:
        case["rounds"] = {"untilMatch": rounds.get("untilMatch") or 2, "afterMatch": rounds.get("afterMatch") or 5}
    conf = (t.get("Mocks") or {}).get("SchedulerConf")
    if conf:
        case["schedulerConf"] = conf
    case["nodes"] = {k: _node(v) for k, v in (t.get("Nodes") or {}).items()}
    case["queues"] = [_queue(q) for q in t.get("Queues") or []]
    if t.get("Departments"):
        case["departments"] = [_department(d) for d in t["Departments"]]
    if t.get("DisableDefaultDepartment"):
        case["disableDefaultDepartment"] = True
    if t.get("Topologies"):
        case["topologies"] = [{"name": tp["metadata"]["name"],
                               "levels": [lv["nodeLabel"] for lv in tp["spec"]["levels"]]}
                              for tp in t["Topologies"]]
    case["jobs"] = [_job(j, rec["taskStates"].get(j["Name"], []), rec["subgroups"].get(j["Name"]))
                    for j in t.get("Jobs") or []]
    exp: dict = {}
    if t.get("JobExpectedResults"):
        exp["jobs"] = {k: _result(v, statuses["job/" + k]) for k, v in t["JobExpectedResults"].items()}
    dropped = []
    if t.get("TaskExpectedResults"):
        # KAI's MatchExpectedAndRealTasks checks only entries that name a real task
        # (<job>-<index>); others are never looked at, so they are left out here
        real = {f"{j['name']}-{i}" for j in case["jobs"] for i in range(len(j["tasks"]))}
        dropped = sorted(k for k in t["TaskExpectedResults"] if k not in real)
        exp["tasks"] = {k: _result(v, statuses["task/" + k]) for k, v in t["TaskExpectedResults"].items()
                        if k in real}
    if t.get("ExpectedNodesResources"):
        exp["nodes"] = {k: {"idleGPUs": _num(v.get("IdleGPUs", 0)), "releasingGPUs": _num(v.get("ReleasingGPUs", 0))}
                        for k, v in t["ExpectedNodesResources"].items()}
    cr = (t.get("Mocks") or {}).get("CacheRequirements")
    if cr:
        exp["counts"] = {"binds": cr.get("NumberOfCacheBinds", 0), "evictions": cr.get("NumberOfCacheEvictions", 0),
                         "pipelines": cr.get("NumberOfPipelineActions", 0)}
    case["expected"] = exp
    tags = _tags(case)
    if tags:
        head = [k for k in ("name", "source", "actions", "rounds") if k in case]
        case = {**{k: case[k] for k in head}, "tags": tags,
                **{k: v for k, v in case.items() if k not in head}}
    case["notes"] = f"translated mechanically from KAI commit {commit} ({rel}, {func})"
    if dropped:
        case["notes"] += (f"; the Go expectation(s) for {', '.join(dropped)} name no task, so KAI never "
                          f"checks them: left out")
    return area, case


class _Dumper(yaml.SafeDumper):
    pass


def _flow_small(dumper, data):
    flow = all(not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))
               for v in data.values()) and len(data) <= 8
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


_Dumper.add_representer(dict, _flow_small)


def dump_cases(cases: list[dict]) -> str:
    return yaml.dump(cases, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", help="JSON lines written by the BuildSession hook")
    ap.add_argument("--commit", required=True, help="KAI commit the dump was made at")
    ap.add_argument("--append", action="store_true", help="append new cases to kai/<area>.yaml")
    args = ap.parse_args(argv)
    existing = collections.Counter()
    names = set()
    for _stem, c in runner.load_cases():
        existing[c["source"]] += 1
        names.add(c["name"])
    seen = collections.Counter()
    new: dict[str, list[dict]] = collections.defaultdict(list)
    with open(args.dump, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            got = convert(rec, args.commit)
            if got is None:
                continue
            area, case = got
            seen[case["source"]] += 1
            if seen[case["source"]] <= existing[case["source"]]:
                continue                          # translated by hand already
            base = f"{AREA[area]}-{_slug(case['source'].split(': ', 1)[1])}"
            name, i = base, 2
            while name in names:
                name, i = f"{base}-{i}", i + 1
            names.add(name)
            case["name"] = name
            new[area].append(case)
    for area, cases in new.items():
        text = dump_cases(cases)
        if args.append:
            path = os.path.join(runner.CASE_DIR, f"{area}.yaml")
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"\n# ------------------------------------------------ translated mechanically from KAI "
                        f"commit {args.commit[:12]} (from_kai_dump.py)\n")
                f.write(text)
            print(f"{path}: +{len(cases)} cases", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

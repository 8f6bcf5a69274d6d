#!/usr/bin/env python3
"""Standalone format check for tests/scenarios/kai/*.yaml (see README.md).

Usage: python tests/scenarios/check_format.py [files...]
Exit status 0 when every case is well formed, 1 otherwise.
"""
import glob
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

CASE_KEYS = {"name", "source", "actions", "rounds", "tags", "schedulerConf", "nodes", "queues",
             "departments", "disableDefaultDepartment", "jobs", "expected", "notes", "topologies"}
REQUIRED_CASE_KEYS = {"name", "source", "actions", "nodes", "queues", "jobs", "expected"}
NODE_KEYS = {"gpus", "gpuName", "migStrategy", "migInstances", "cpuMillis", "cpuMemory", "gpuMemory",
             "gpuMemorySynced", "maxTaskNum", "labels"}
QUEUE_KEYS = {"name", "parentQueue", "priority", "deservedGPUs", "deservedCPUs", "deservedMemory",
              "maxAllowedGPUs", "maxAllowedCPUs", "maxAllowedMemory", "gpuOverQuotaWeight",
              "interactiveTimeoutInMinutes", "useOnlyFreeCPUResources", "v1"}
DEPT_KEYS = {"name", "deservedGPUs", "maxAllowedGPUs", "maxAllowedCPUs", "maxAllowedMemory"}
JOB_KEYS = {"name", "namespace", "queue", "priority", "preemptibility", "requiredGPUsPerTask",
            "requiredCPUsPerTask", "requiredMemoryPerTask", "requiredGpuMemory",
            "requiredMultiFractionDevicesPerTask", "isBestEffortJob", "jobAgeInMinutes", "deleteJobInTest",
            "jobNotReadyForSsn", "minAvailable", "staleDuration", "perJobStalenessGracePeriod", "subGroups", "tasks",
            "topologyConstraint"}
TASK_KEYS = {"state", "nodeName", "gpuGroups", "subGroupName", "requiredGPUs", "nodeAffinityNames",
             "podAffinityLabels", "podAffinityTopologyKey", "podAntiAffinityTopologyKey",
             "requiredMigInstances", "priority", "isLegacyMigTask", "resourceClaimNames",
             "resourceClaimTemplates", "annotations"}
EXPECT_KEYS = {"jobs", "tasks", "nodes", "counts"}
RESULT_KEYS = {"status", "nodeName", "gpusRequired", "gpusAccepted", "milliCpuRequired", "memoryRequired",
               "gpuGroups", "dontValidateGPUGroup", "lastStartTimestampOlderThan", "expectedErrorMessage"}
NODE_RESULT_KEYS = {"idleGPUs", "releasingGPUs"}
COUNT_KEYS = {"binds", "evictions", "pipelines", "podGroupEvictionEvents"}
STATUSES = {"Pending", "Allocated", "Pipelined", "Binding", "Bound", "Running", "Releasing", "Succeeded",
            "Failed", "Unknown", "Deleted", "Gated"}
ACTIONS = {"allocate", "consolidation", "reclaim", "preempt", "stalegangeviction"}
PREEMPTIBILITY = {"preemptible", "non-preemptible", "semi-preemptible"}
NUMERIC_JOB = {"priority", "requiredGPUsPerTask", "requiredCPUsPerTask", "requiredMemoryPerTask",
               "requiredGpuMemory", "requiredMultiFractionDevicesPerTask", "jobAgeInMinutes", "minAvailable"}
NUMERIC_NODE = {"gpus", "cpuMillis", "cpuMemory", "gpuMemory", "maxTaskNum"}
NUMERIC_QUEUE = {"priority", "deservedGPUs", "deservedCPUs", "deservedMemory", "maxAllowedGPUs",
                 "maxAllowedCPUs", "maxAllowedMemory", "gpuOverQuotaWeight", "interactiveTimeoutInMinutes"}
NUMERIC_RESULT = {"gpusRequired", "gpusAccepted", "milliCpuRequired", "memoryRequired"}


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Checker:
    def __init__(self):
        self.errors = []
        self.names = {}

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def keys(self, where, obj, allowed, required=()):
        if not isinstance(obj, dict):
            self.err(where, f"expected a mapping, got {type(obj).__name__}")
            return False
        for k in obj:
            if k not in allowed:
                self.err(where, f"unknown key {k!r}")
        for k in required:
            if k not in obj:
                self.err(where, f"missing key {k!r}")
        return True

    def nums(self, where, obj, fields):
        for f in fields:
            if f in obj and not is_num(obj[f]):
                self.err(where, f"{f} must be a number, got {obj[f]!r}")

    def check_file(self, path):
        with open(path) as fh:
            data = yaml.safe_load(fh)
        fname = os.path.basename(path)
        if data is None:
            data = []
        if not isinstance(data, list):
            self.err(fname, "top level must be a list of cases")
            return 0
        for i, case in enumerate(data):
            self.check_case(f"{fname}[{i}]", case, fname)
        return len(data)

    def check_case(self, where, case, fname):
        if not self.keys(where, case, CASE_KEYS, REQUIRED_CASE_KEYS):
            return
        name = case.get("name")
        if isinstance(name, str):
            where = f"{fname}:{name}"
            if name in self.names:
                self.err(where, f"duplicate name (also in {self.names[name]})")
            self.names[name] = fname
        else:
            self.err(where, "name must be a string")
        src = case.get("source")
        if not isinstance(src, str) or ": " not in src or ".go" not in src.split(": ")[0]:
            self.err(where, "source must be '<file>.go: <Go test name>'")
        acts = [a.strip() for a in str(case.get("actions", "")).split(",")]
        for a in acts:
            if a not in ACTIONS:
                self.err(where, f"unknown action {a!r}")
        if fname == "integration.yaml":
            r = case.get("rounds")
            if not isinstance(r, dict) or not is_num(r.get("untilMatch")) or not is_num(r.get("afterMatch")):
                self.err(where, "integration cases need rounds: {untilMatch: N, afterMatch: M}")
        elif "rounds" in case:
            self.err(where, "rounds only belongs to integration cases")
        tags = case.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            self.err(where, "tags must be a list of strings")
        nodes = case.get("nodes")
        if not isinstance(nodes, dict):
            self.err(where, "nodes must be a mapping")
            nodes = {}
        for n, node in nodes.items():
            if node is None:
                continue
            if self.keys(f"{where}/nodes/{n}", node, NODE_KEYS):
                self.nums(f"{where}/nodes/{n}", node, NUMERIC_NODE)
        qnames = set()
        for key, allowed in (("queues", QUEUE_KEYS), ("departments", DEPT_KEYS)):
            items = case.get(key, [])
            if not isinstance(items, list):
                self.err(where, f"{key} must be a list")
                continue
            for q in items:
                if self.keys(f"{where}/{key}", q, allowed, ("name",)):
                    qnames.add(q.get("name"))
                    self.nums(f"{where}/{key}/{q.get('name')}", q, NUMERIC_QUEUE)
        parents = qnames | {"default"}
        for q in case.get("queues", []) or []:
            if isinstance(q, dict) and q.get("parentQueue") and q["parentQueue"] not in parents:
                self.err(where, f"queue {q.get('name')} has unknown parentQueue {q['parentQueue']}")
        jobs = case.get("jobs")
        if not isinstance(jobs, list):
            self.err(where, "jobs must be a list")
            jobs = []
        job_names, task_names = set(), set()
        for j in jobs:
            jw = f"{where}/jobs/{j.get('name') if isinstance(j, dict) else '?'}"
            if not self.keys(jw, j, JOB_KEYS, ("name", "queue", "tasks")):
                continue
            if j["name"] in job_names:
                self.err(jw, "duplicate job name")
            job_names.add(j["name"])
            if j.get("queue") not in qnames:
                self.err(jw, f"queue {j.get('queue')!r} not declared")
            self.nums(jw, j, NUMERIC_JOB)
            if "preemptibility" in j and j["preemptibility"] not in PREEMPTIBILITY:
                self.err(jw, f"bad preemptibility {j['preemptibility']!r}")
            sg_names = set()
            for sg in j.get("subGroups") or []:
                if self.keys(f"{jw}/subGroups", sg, {"name", "parent", "minAvailable", "minSubGroup", "topologyConstraint"}, ("name",)):
                    if sg.get("parent") and sg["parent"] not in sg_names:
                        self.err(jw, f"subGroup {sg['name']} lists unknown/later parent {sg['parent']}")
                    sg_names.add(sg["name"])
            if "subGroups" in j and "minAvailable" in j:
                self.err(jw, "use either minAvailable or subGroups")
            tasks = j.get("tasks") or []
            for ti, t in enumerate(tasks):
                tw = f"{jw}/tasks[{ti}]"
                task_names.add(f"{j['name']}-{ti}")
                if not self.keys(tw, t, TASK_KEYS, ("state",)):
                    continue
                if t.get("state") not in STATUSES:
                    self.err(tw, f"bad state {t.get('state')!r}")
                if t.get("subGroupName") and t["subGroupName"] not in sg_names:
                    self.err(tw, f"subGroupName {t['subGroupName']!r} not declared in subGroups")
                if t.get("nodeName") and t["nodeName"] not in nodes:
                    self.err(tw, f"node {t['nodeName']!r} not declared")
        exp = case.get("expected")
        if not self.keys(f"{where}/expected", exp, EXPECT_KEYS):
            return
        for jn, r in (exp.get("jobs") or {}).items():
            rw = f"{where}/expected/jobs/{jn}"
            if jn not in job_names:
                self.err(rw, "job not declared")
            if self.keys(rw, r, RESULT_KEYS, ("status",)):
                self.check_result(rw, r, nodes)
        for tn, r in (exp.get("tasks") or {}).items():
            rw = f"{where}/expected/tasks/{tn}"
            if tn not in task_names:
                self.err(rw, "task not declared (names are <job>-<index>)")
            if self.keys(rw, r, RESULT_KEYS, ("status",)):
                self.check_result(rw, r, nodes)
        for nn, r in (exp.get("nodes") or {}).items():
            rw = f"{where}/expected/nodes/{nn}"
            if nn not in nodes:
                self.err(rw, "node not declared")
            if self.keys(rw, r, NODE_RESULT_KEYS):
                self.nums(rw, r, NODE_RESULT_KEYS)
        counts = exp.get("counts")
        if counts is not None and self.keys(f"{where}/expected/counts", counts, COUNT_KEYS):
            self.nums(f"{where}/expected/counts", counts, COUNT_KEYS)

    def check_result(self, rw, r, nodes):
        if r.get("status") not in STATUSES:
            self.err(rw, f"bad status {r.get('status')!r}")
        if r.get("nodeName") and r["nodeName"] not in nodes:
            self.err(rw, f"node {r['nodeName']!r} not declared")
        self.nums(rw, r, NUMERIC_RESULT)


def main(argv):
    files = argv[1:] or sorted(glob.glob(os.path.join(HERE, "kai", "*.yaml")))
    checker = Checker()
    total = 0
    for path in files:
        try:
            n = checker.check_file(path)
        except yaml.YAMLError as exc:
            checker.err(os.path.basename(path), f"YAML error: {exc}")
            continue
        print(f"{os.path.basename(path)}: {n} cases")
        total += n
    print(f"total: {total} cases")
    for e in checker.errors:
        print("ERROR", e)
    return 1 if checker.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

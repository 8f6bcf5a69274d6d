"""Names KAI users put on their objects, and kai's pod status flags.

These are the exact keys KAI-Scheduler reads, so manifests written for KAI work unchanged.
"""
from __future__ import annotations

SCHEDULER_NAME = "kai-scheduler"

# labels / annotations on workloads
QUEUE_LABEL = "kai.scheduler/queue"
LEGACY_QUEUE_LABEL = "project"
DEFAULT_QUEUE = "default-queue"
DEFAULT_PARENT_QUEUE = "default-parent-queue"
PRIORITY_CLASS_LABEL = "priorityClassName"
PREEMPTIBILITY_LABEL = "kai.scheduler/preemptibility"
POD_GROUP_ANNOTATION = "pod-group-name"
SUBGROUP_LABEL = "kai.scheduler/subgroup-name"
TASK_PRIORITY_LABEL = "kai.scheduler/task-priority"
GPU_FRACTION = "gpu-fraction"
GPU_MEMORY = "gpu-memory"
GPU_FRACTION_NUM_DEVICES = "gpu-fraction-num-devices"
GPU_FRACTION_CONTAINER = "gpu-fraction-container-name"
MPS = "mps"
TOPOLOGY = "kai.scheduler/topology"
TOPOLOGY_REQUIRED = "kai.scheduler/topology-required-placement"
TOPOLOGY_PREFERRED = "kai.scheduler/topology-preferred-placement"
LAST_START_TIMESTAMP = "kai.scheduler/last-start-timestamp"
STALE_TIMESTAMP = "kai.scheduler/stale-podgroup-timestamp"
GPU_GROUP_LABEL = "runai-gpu-group"

# node labels
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
MIG_ENABLED_LABEL = "node-role.kubernetes.io/mig-enabled"
# --restrict-node-scheduling's node roles (KAI's default worker node label keys)
CPU_WORKER_LABEL = "node-role.kubernetes.io/cpu-worker"
GPU_WORKER_LABEL = "node-role.kubernetes.io/gpu-worker"
NODE_POOL_LABEL = "kai.scheduler/node-pool"
HOSTNAME_LABEL = "kubernetes.io/hostname"

# priority classes KAI installs (name -> value); values < 100 are preemptible by default
PRIORITY_CLASSES = {"train": 50, "build-preemptible": 75, "build": 100, "inference": 125}
DEFAULT_PRIORITY = 50
PREEMPTIBLE_BELOW = 100
PREEMPTIBLE = "preemptible"
NON_PREEMPTIBLE = "non-preemptible"

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


class PodStatus:
    """A task's status in a session (KAI's pod_status bit flags).

    Plain ints, not an enum: status tests run in the innermost Python loops.
    """

    PENDING = 1
    GATED = 2
    ALLOCATED = 4
    PIPELINED = 8
    BINDING = 16
    BOUND = 32
    RUNNING = 64
    RELEASING = 128
    SUCCEEDED = 256
    FAILED = 512
    UNKNOWN = 1024
    DELETED = 2048


STATUS_NAMES = {v: k.capitalize() for k, v in vars(PodStatus).items() if k.isupper()}


def status_name(status: int) -> str:
    """'Running', 'Pipelined', ... (KAI's names) for a single status flag."""
    return STATUS_NAMES.get(status, str(status))


# status groups, as KAI defines them
ACTIVE_USED = (PodStatus.ALLOCATED | PodStatus.PIPELINED | PodStatus.BINDING | PodStatus.BOUND
               | PodStatus.RUNNING | PodStatus.RELEASING)
ACTIVE_ALLOCATED = ACTIVE_USED & ~PodStatus.RELEASING
ALIVE = ACTIVE_ALLOCATED | PodStatus.PENDING | PodStatus.GATED
ALLOCATED = PodStatus.ALLOCATED | PodStatus.BOUND | PodStatus.BINDING | PodStatus.RUNNING
# statuses whose requests sit on a node (idle is reduced by them)
ON_NODE = ACTIVE_USED

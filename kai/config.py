"""KAI-compatible scheduler configuration (the ``scheduler-conf`` YAML).

Format, as KAI reads it::

    actions: "allocate, consolidation, reclaim, preempt, stalegangeviction"
    tiers:
    - plugins:
      - name: proportion
        arguments: {relcaimerSaturationMultiplier: "1.2"}
      - name: nodeplacement
        arguments: {gpu: binpack, cpu: spread}
    queueDepthPerAction: {reclaim: 100}

Unknown keys, unknown action names and unknown plugin names are errors (with the field
path); KAI plugin names kai does not implement are accepted and reported as ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from kai.usage.model import UsageConfigError, parse_usage_db_config

DEFAULT_ACTIONS = ["allocate", "consolidation", "reclaim", "preempt", "stalegangeviction"]
# KAI's default plugin order (operator priorities, highest first)
DEFAULT_PLUGINS = ["predicates", "proportion", "priority", "nodeavailability", "resourcetype",
                   "podaffinity", "elastic", "kubeflow", "ray", "subgrouporder", "taskorder",
                   "nominatednode", "dynamicresources", "minruntime", "topology", "snapshot",
                   "gpupack", "nodeplacement", "gpusharingorder"]
KAI_ACTIONS = set(DEFAULT_ACTIONS)
KAI_PLUGINS = set(DEFAULT_PLUGINS) | {"gpuspread", "reflectjoborder"}


class ConfigError(ValueError):
    """A scheduler config that cannot be used; the message names the file and field."""


@dataclass
class PluginConf:
    name: str
    arguments: dict[str, str] = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    actions: list[str] = field(default_factory=lambda: list(DEFAULT_ACTIONS))
    plugins: list[PluginConf] = field(default_factory=lambda: [PluginConf(n) for n in DEFAULT_PLUGINS])
    queue_depth_per_action: dict[str, int] = field(default_factory=dict)
    source: str = "<default>"
    # KAI's scheduler flags that shape the algorithm (set from the command line)
    max_consolidation_preemptees: int = 16          # 0 disables consolidation
    allow_consolidating_reclaim: bool = True        # reclaim may move victims instead of evicting
    default_staleness_grace_period: float = 60.0    # seconds; negative = never evict stale gangs
    # pod label naming a workload's queue (KAI's queueLabelKey / --queue-label-key)
    queue_label_key: str = "kai.scheduler/queue"
    # KAI's --full-hierarchy-fairness: False flattens the queue tree to one level of
    # projects under a synthetic unlimited root named "default" (kai.api.queue_info.project_level_queues)
    full_hierarchy_fairness: bool = True
    # KAI's --restrict-node-scheduling: GPU pods only on nodes with the gpu worker label, other
    # pods only on nodes with the cpu worker label (kai.plugins.predicates); the label keys are
    # KAI's --{cpu,gpu,mig}-worker-node-label-key
    restrict_node_scheduling: bool = False
    # (the same defaults as kai.api.constants CPU_WORKER_LABEL, GPU_WORKER_LABEL, MIG_ENABLED_LABEL;
    # kai.config may not import kai.api, its peer layer: tests/test_cli.py checks they agree)
    cpu_worker_node_label_key: str = "node-role.kubernetes.io/cpu-worker"
    gpu_worker_node_label_key: str = "node-role.kubernetes.io/gpu-worker"
    mig_worker_node_label_key: str = "node-role.kubernetes.io/mig-enabled"
    # KAI's --use-scheduling-signatures: reclaim, preempt and consolidation skip a job that is
    # no easier than one with the same constraints that failed in this action
    use_scheduling_signatures: bool = True
    # KAI's --detailed-fit-errors: unschedulable messages list every node's reasons
    detailed_fit_errors: bool = False
    grouper: object = None      # kai.podgrouper.defaults.GrouperConfig, set from the flags (cli.apply_flags)
    # usageDBConfig: time-based fair share (kai.usage.model.UsageDBConfig); None = off
    usage_db: object = None

    def plugin_args(self, name: str) -> dict[str, str] | None:
        for p in self.plugins:
            if p.name == name:
                return p.arguments
        return None

    @property
    def placement(self) -> dict[str, str]:
        args = self.plugin_args("nodeplacement") or {}
        return {"gpu": args.get("gpu", "binpack"), "cpu": args.get("cpu", "binpack")}


def default_config() -> SchedulerConfig:
    return SchedulerConfig()


def parse_config(doc: object, source: str = "<config>") -> SchedulerConfig:
    """Validate a loaded YAML document into a SchedulerConfig; raise ConfigError with the field."""
    if doc is None:
        return SchedulerConfig(source=source)
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the config must be a mapping, got {type(doc).__name__}")
    allowed = {"actions", "tiers", "queueDepthPerAction", "usageDBConfig", "queueLabelKey"}
    for key in doc:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown field {key!r} (expected one of {sorted(allowed)})")
    cfg = SchedulerConfig(source=source)
    if "actions" in doc:
        raw = doc["actions"]
        if not isinstance(raw, str):
            raise ConfigError(f"{source}: field 'actions' must be a comma-separated string")
        actions = [a.strip() for a in raw.split(",") if a.strip()]
        for a in actions:
            if a not in KAI_ACTIONS:
                raise ConfigError(f"{source}: actions: unknown action {a!r} (known: {sorted(KAI_ACTIONS)})")
        cfg.actions = actions
    if "tiers" in doc:
        tiers = doc["tiers"]
        if not isinstance(tiers, list):
            raise ConfigError(f"{source}: field 'tiers' must be a list")
        plugins = []
        for ti, tier in enumerate(tiers):
            if not isinstance(tier, dict) or not isinstance(tier.get("plugins", []), list):
                raise ConfigError(f"{source}: tiers[{ti}] must be a mapping with a 'plugins' list")
            for pi, p in enumerate(tier.get("plugins", [])):
                where = f"tiers[{ti}].plugins[{pi}]"
                if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                    raise ConfigError(f"{source}: {where} must be a mapping with a string 'name'")
                if p["name"] not in KAI_PLUGINS:
                    raise ConfigError(f"{source}: {where}.name: unknown plugin {p['name']!r}")
                args = p.get("arguments") or {}
                if not isinstance(args, dict):
                    raise ConfigError(f"{source}: {where}.arguments must be a mapping of strings")
                plugins.append(PluginConf(p["name"], {str(k): str(v) for k, v in args.items()}))
        cfg.plugins = plugins
    np_args = cfg.plugin_args("nodeplacement")
    if np_args:
        for k in ("gpu", "cpu"):
            v = np_args.get(k, "binpack")
            if v not in ("binpack", "spread", "fgd"):
                raise ConfigError(f"{source}: nodeplacement argument {k}={v!r}: expected binpack, spread or fgd")
        mix = np_args.get("fgdMix", "session")
        if mix not in ("session", "arrived"):
            raise ConfigError(f"{source}: nodeplacement argument fgdMix={mix!r}: expected session, arrived")
    qd = doc.get("queueDepthPerAction") or {}
    if not isinstance(qd, dict):
        raise ConfigError(f"{source}: field 'queueDepthPerAction' must be a mapping")
    for k, v in qd.items():
        if k not in cfg.actions:
            raise ConfigError(f"{source}: queueDepthPerAction.{k}: action is not enabled")
        if not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{source}: queueDepthPerAction.{k} must be a positive integer")
    cfg.queue_depth_per_action = dict(qd)
    if doc.get("usageDBConfig") is not None:
        try:
            cfg.usage_db = parse_usage_db_config(doc["usageDBConfig"])
        except UsageConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if "queueLabelKey" in doc:
        cfg.queue_label_key = check_label_key(doc["queueLabelKey"], f"{source}: queueLabelKey")
    return cfg


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_label_key(value: object, where: str) -> str:
    """``value`` if it is a valid Kubernetes label key (``[prefix/]name``), else ConfigError."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty label key, got {value!r}")
    prefix, slash, name = value.rpartition("/")
    if not _LABEL_NAME.match(name) or (slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))):
        raise ConfigError(f"{where}: {value!r} is not a valid label key ([dns-prefix/]name, name up to 63 "
                          f"characters of [A-Za-z0-9-_.])")
    return value


def load_config(path: str) -> SchedulerConfig:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    # a ConfigMap holding the config (as KAI's operator renders it) is accepted too
    if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
        data = doc.get("data") or {}
        inner = data.get("config.yaml") or next(iter(data.values()), "")
        doc = yaml.safe_load(inner)
    return parse_config(doc, path)

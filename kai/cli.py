"""Command line: ``kai simulate`` (offline, over manifests), ``kai scheduler`` (live), ``kai webhook``,
``kai node-scale-adjuster`` and ``kai status`` (a read-only view of a live cluster; also the kubectl plugin ``kubectl kai``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import structlog

import kai
from kai.api import constants as C
from kai.config import ConfigError, default_config, load_config, parse_config

EXAMPLE = os.path.join(os.path.dirname(__file__), "examples", "quickstart.yaml")


class _StderrLogger:
    """structlog's final logger: one line on whatever ``sys.stderr`` is when the line is
    written (not the stream of the moment logging was configured, which may be closed since)."""

    def msg(self, message: str) -> None:
        try:
            print(message, file=sys.stderr, flush=True)
        except (ValueError, OSError):       # stderr closed or gone: a log line is not worth a crash
            pass

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else (logging.INFO if verbosity == 1 else logging.DEBUG)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level),
                        logger_factory=lambda *args: _StderrLogger())


def cmd_simulate(args) -> int:
    from kai.sim.loader import LoadError, load_manifests
    from kai.sim.simulator import format_table, simulate

    from kai.sim.kai_snapshot import params_to_config
    from kai.sim.simulator import parse_rfc3339

    paths = args.paths or [EXAMPLE]
    try:
        if args.now is not None:
            try:
                start, source = parse_rfc3339(args.now), "--now"
            except ValueError as exc:
                raise ConfigError(f"--now: {exc}") from None
        else:
            start, source = time.time(), "current time"
        manifests = load_manifests(paths, keep_going=True)
        if args.config:
            config = load_config(args.config)
        elif manifests.config_docs:
            where, doc = manifests.config_docs[-1]
            config = parse_config(doc, where)
        else:
            config = default_config()
        for where, params in manifests.scheduler_params:     # a KAI snapshot's flags
            manifests.notes.extend(params_to_config(params, config, where))
        apply_flags(config, args)
        if args.partition_label_value is not None:           # one scheduling shard's view
            from kai.sim.shard import select_partition
            select_partition(manifests, _scope(args))
    except (LoadError, ConfigError) as exc:
        print(f"kai simulate: error: {exc}", file=sys.stderr)
        return 2
    if args.cycles < 1:
        print("kai simulate: error: --cycles must be >= 1", file=sys.stderr)
        return 2
    if args.compare and not args.report:
        print("kai simulate: error: --compare needs --report FILE.html", file=sys.stderr)
        return 2
    for err in manifests.errors:        # bad objects are left out; the rest is simulated
        print(f"kai simulate: error: {err}", file=sys.stderr)
    args._start_time, args._clock_source = start, source      # the --compare run uses the same clock
    history = None
    if args.usage_history:
        from kai.usage.model import UsageParams
        from kai.sim.usage_history import UsageHistoryError, load_usage_history
        try:
            history = load_usage_history(args.usage_history, start, config.usage_db.params if config.usage_db
                                         else UsageParams())
        except UsageHistoryError as exc:
            print(f"kai simulate: error: --usage-history: {exc}", file=sys.stderr)
            return 2
    report = simulate(manifests, config, cycles=args.cycles, interval=args.interval, start_time=start,
                      clock_source=source, gpu_map=bool(args.report), usage_history=history)
    if args.report:
        err = _write_report(args, paths, manifests, config, report)
        if err:
            print(f"kai simulate: error: {err}", file=sys.stderr)
            return 2
    if args.output == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(report))
    return 2 if manifests.errors else 0


def _write_report(args, paths, manifests, config, report) -> str | None:
    """``--report`` (and ``--compare``): the HTML page of kai.sim.report; an error text or None."""
    from kai.sim.loader import LoadError, load_manifests
    from kai.sim.report import overlay, run_view, write_report
    from kai.sim.simulator import simulate

    runs = [run_view(os.path.basename(args.config) if args.config else "baseline", config.source, report)]
    if args.compare:
        try:
            other = load_manifests([args.compare])
            both = overlay(manifests, other)
            if other.config_docs:
                where, doc = other.config_docs[-1]
                config_b = parse_config(doc, where)
            elif any(x.startswith("ConfigMap ") for x in other.skipped):   # the chart's ConfigMap
                config_b = load_config(args.compare)
            else:
                config_b = config                 # same config, other objects
            apply_flags(config_b, args)
        except (LoadError, ConfigError) as exc:
            return f"--compare: {exc}"
        report_b = simulate(both, config_b, cycles=args.cycles, interval=args.interval, gpu_map=True,
                            start_time=args._start_time, clock_source=args._clock_source)
        runs.append(run_view(os.path.basename(args.compare), config_b.source, report_b))
    try:
        write_report(args.report, runs, title="kai simulate" + (" — compare" if args.compare else ""),
                     inputs=list(paths) + ([args.compare] if args.compare else []))
    except OSError as exc:
        return f"--report {args.report}: {exc.strerror}"
    print(f"kai simulate: report written to {args.report}", file=sys.stderr)
    return None


def _scope(args):
    """The shard and monitoring scope of the flags (kai.cache.scope); ConfigError if unusable."""
    from kai.cache.scope import Scope, ScopeError
    try:
        return Scope.from_args(args)
    except ScopeError as exc:
        raise ConfigError(str(exc)) from None


def cmd_scheduler(args) -> int:
    from kai.controller.main import run_controller   # live controller (needs a cluster)

    try:
        config = apply_flags(load_config(args.config) if args.config else default_config(), args)
        args._scope = _scope(args)
    except ConfigError as exc:
        print(f"kai scheduler: error: {exc}", file=sys.stderr)
        return 2
    return run_controller(args, config)


def cmd_node_scale_adjuster(args) -> int:
    from kai.nodescaleadjuster.adjuster import run_node_scale_adjuster   # scaling pods for autoscalers

    if not 0 < args.gpu_memory_to_fraction_ratio <= 1:
        print("kai node-scale-adjuster: error: --gpu-memory-to-fraction-ratio must be in (0, 1]", file=sys.stderr)
        return 2
    return run_node_scale_adjuster(args)


def cmd_webhook(args) -> int:
    from kai.admission.webhook import run_webhook   # KAI's pod, Queue and PodGroup admission webhooks

    return run_webhook(args)


def cmd_status(args) -> int:
    from kai.status.command import run_status   # read-only view of a live cluster

    return run_status(args)


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def _port(v: str) -> int:
    """A TCP port; KAI writes it as ``:8182`` or ``8182``."""
    try:
        port = int(v.lstrip(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {v!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def _duration(v: str) -> float:
    from kai.api.queue_info import parse_duration
    neg = v.startswith("-")
    secs = parse_duration(v.lstrip("-"))
    if secs is None:
        try:
            secs = float(v.lstrip("-"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a duration like 60s or 2m, got {v!r}") from None
    return -secs if neg else secs


def _add_algorithm_flags(p: argparse.ArgumentParser) -> None:
    """KAI's scheduler flags that change decisions; shared by `simulate` and `scheduler`."""
    # default None: keep the config's value (KAI's default, or a KAI snapshot's params)
    p.add_argument("--max-consolidation-preemptees", type=int, default=None,
                   help="jobs consolidation may move for one pending job (default 16; 0 disables)")
    p.add_argument("--allow-consolidating-reclaim", type=_bool, default=None, metavar="BOOL",
                   help="reclaim may move victims instead of evicting them (default true)")
    p.add_argument("--default-staleness-grace-period", type=_duration, default=None, metavar="DURATION",
                   help="evict a running gang below minMember after this long (default 60s; negative: never)")
    # Go-style booleans: `--flag`, `--flag=true` and `--flag false` all work
    p.add_argument("--full-hierarchy-fairness", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="fair share down the whole queue tree (default true); false: between projects only, "
                        "under one unlimited root")
    p.add_argument("--restrict-node-scheduling", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="GPU pods only on nodes with the gpu worker label, other pods only on nodes with the "
                        "cpu worker label (default false)")
    p.add_argument("--cpu-worker-node-label-key", default=None, metavar="KEY",
                   help=f"label of CPU worker nodes (default {C.CPU_WORKER_LABEL})")
    p.add_argument("--gpu-worker-node-label-key", default=None, metavar="KEY",
                   help=f"label of GPU worker nodes (default {C.GPU_WORKER_LABEL})")
    p.add_argument("--mig-worker-node-label-key", default=None, metavar="KEY",
                   help=f"label marking MIG-enabled nodes, value true/false (default {C.MIG_ENABLED_LABEL})")
    p.add_argument("--use-scheduling-signatures", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="reclaim, preempt and consolidation skip jobs no easier than a failed job with the "
                        "same scheduling constraints (default true)")
    p.add_argument("--detailed-fit-errors", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="unschedulable messages list the reasons of every node (default false)")


def _add_partition_flags(p: argparse.ArgumentParser, simulate: bool = False) -> None:
    """KAI's scheduling-shard flags; shared by `simulate` and `scheduler` (docs/shards.md)."""
    p.add_argument("--nodepool-label-key", default=None, metavar="KEY",
                   help="label that partitions nodes, queues and PodGroups into shards (default "
                        "kai.scheduler/node-pool; empty: no partitioning)")
    p.add_argument("--partition-label-value", default=None, metavar="VALUE",
                   help="this shard's value of that label; empty: the default shard, objects without the label"
                        + (" (simulate: only given, the manifests are narrowed to that shard)" if simulate else ""))


def _add_grouper_flags(p: argparse.ArgumentParser) -> None:
    """The pod-grouper's flags (KAI's podgrouper flags); shared by `simulate` and `scheduler`."""
    p.add_argument("--queue-label-key", default=None, metavar="KEY",
                   help="pod/owner label naming the queue (default: the config's queueLabelKey, else "
                        "kai.scheduler/queue)")
    p.add_argument("--default-priorities-configmap-name", default="", metavar="NAME",
                   help="ConfigMap with the per-kind default priority class and preemptibility (key 'types')")
    p.add_argument("--default-priorities-configmap-namespace", default="", metavar="NAMESPACE",
                   help="namespace of that ConfigMap")
    p.add_argument("--knative-gang-schedule", type=_bool, default=True, metavar="BOOL",
                   help="one PodGroup per Knative revision, minMember its min-scale (default true)")
    p.add_argument("--search-legacy-pg", type=_bool, default=True, metavar="BOOL",
                   help="keep using PodGroups of the legacy name of batch Jobs when they exist (default true)")


def apply_flags(config, args):
    """Copy the algorithm and pod-grouper flags onto the loaded config."""
    from kai.config import check_label_key
    from kai.podgrouper.defaults import grouper_config

    if args.max_consolidation_preemptees is not None:
        config.max_consolidation_preemptees = args.max_consolidation_preemptees
    if args.allow_consolidating_reclaim is not None:
        config.allow_consolidating_reclaim = args.allow_consolidating_reclaim
    if args.default_staleness_grace_period is not None:
        config.default_staleness_grace_period = args.default_staleness_grace_period
    for flag in ("full_hierarchy_fairness", "restrict_node_scheduling", "use_scheduling_signatures",
                 "detailed_fit_errors"):
        if getattr(args, flag, None) is not None:
            setattr(config, flag, getattr(args, flag))
    for flag in ("cpu_worker_node_label_key", "gpu_worker_node_label_key", "mig_worker_node_label_key"):
        if getattr(args, flag, None) is not None:
            setattr(config, flag, check_label_key(getattr(args, flag), "--" + flag.replace("_", "-")))
    if getattr(args, "queue_label_key", None):
        config.queue_label_key = check_label_key(args.queue_label_key, "--queue-label-key")
    config.grouper = grouper_config(args, config.queue_label_key)
    return config


def build_parser(prog: str = "kai") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="GPU batch scheduler for Kubernetes, KAI-Scheduler compatible")
    p.add_argument("--version", action="version", version=f"kai {kai.__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("simulate", help="run the scheduler offline over manifests")
    s.add_argument("paths", nargs="*", metavar="FILE_OR_DIR",
                   help="manifests (YAML/JSON, multi-document); default: the bundled quickstart example")
    s.add_argument("--config", help="scheduler config YAML (KAI format: actions, tiers[].plugins[])")
    s.add_argument("--cycles", type=int, default=1, help="cycles to run, feeding results back (default 1)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds of simulated time per cycle (default 1)")
    s.add_argument("--now", metavar="RFC3339",
                   help="the simulated clock at the first cycle, e.g. 2026-03-01T12:00:00Z (default: the "
                        "current time, so a dump of a live cluster replays with the right ages)")
    s.add_argument("--usage-history", metavar="FILE",
                   help="queue usage history for time-based fair share (docs/simulate.md): samples, or the "
                        "ConfigMap kai's usage DB keeps; windows and decay from the config's usageDBConfig")
    s.add_argument("--output", choices=["table", "json"], default="table")
    s.add_argument("--report", metavar="FILE.html",
                   help="also write a self-contained HTML report (fair share vs allocation, GPU map, pending causes)")
    s.add_argument("--compare", metavar="OTHER",
                   help="with --report: run again with OTHER's scheduler config and/or objects (e.g. Queues "
                        "with moved quota, replacing those of the same name) and show both side by side")
    _add_algorithm_flags(s)
    _add_grouper_flags(s)
    _add_partition_flags(s, simulate=True)
    s.set_defaults(func=cmd_simulate)
    r = sub.add_parser("scheduler", help="run the scheduler against a cluster")
    _add_algorithm_flags(r)
    _add_grouper_flags(r)
    _add_partition_flags(r)
    r.add_argument("--pod-label-selector", default="", metavar="SELECTOR",
                   help="selective monitoring: only our pods with these labels are watched and scheduled, "
                        "e.g. app=batch (KAI's podLabelSelector; kubectl -l syntax)")
    r.add_argument("--namespace-label-selector", default="", metavar="SELECTOR",
                   help="selective monitoring: only pods and PodGroups in namespaces with these labels, "
                        "e.g. team=ml (KAI's namespaceLabelSelector)")
    r.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then ~/.kube/config)")
    r.add_argument("--config", help="scheduler config YAML")
    r.add_argument("--scheduler-name", default="kai-scheduler")
    r.add_argument("--schedule-period", type=float, default=1.0, help="seconds between cycles")
    r.add_argument("--leader-elect", nargs="?", const=True, default=False, type=_bool, metavar="BOOL",
                   help="elect a leader through a Lease (also --leader-elect=true, as KAI's shard args pass it)")
    r.add_argument("--namespace", default="kai-scheduler",
                   help="namespace of the leader-election Lease and of the usage history ConfigMap")
    r.add_argument("--metrics-port", type=int, default=8080, help="/metrics, /healthz, /readyz port (0: any free)")
    r.add_argument("--metrics-namespace", default="kai", help="prefix of the Prometheus metric names")
    r.add_argument("--lease-name", default=None, help="leader-election Lease name (default: the scheduler name, "
                                                      "plus -<partition value> for a shard)")
    r.add_argument("--identity", default=None, help="leader-election identity (default: host_pid_random)")
    r.add_argument("--bind-workers", type=int, default=16, help="concurrent binding/eviction API calls")
    r.add_argument("--leader-elect-lease-duration", type=_duration, default=15.0, metavar="DURATION",
                   help="how long followers wait before taking over an unrenewed Lease (default 15s)")
    r.add_argument("--leader-elect-renew-deadline", type=_duration, default=10.0, metavar="DURATION",
                   help="the leader steps down if it cannot renew for this long; writes are fenced "
                        "lease-duration minus this before the Lease could expire (default 10s)")
    r.add_argument("--leader-elect-retry-period", type=_duration, default=2.0, metavar="DURATION",
                   help="between Lease renewals / acquisition attempts (default 2s)")
    r.add_argument("--shutdown-grace-period", type=_duration, default=20.0, metavar="DURATION",
                   help="on SIGTERM, time in-flight bindings get before the Lease is released (default 20s; "
                        "keep below the pod's terminationGracePeriodSeconds)")
    r.add_argument("--volume-binding-timeout-seconds", type=float, default=120.0,
                   help="how long a binding waits for the pod's claims to be bound (KAI's binder flag; default 120)")
    r.add_argument("--qps", type=float, default=50.0,
                   help="requests per second to the API server, sustained (default 50; 0: client-go's 5; "
                        "negative: no limit)")
    r.add_argument("--burst", type=int, default=300, help="the token bucket's size: requests sent at once before --qps paces them "
                        "(default 300)")
    r.add_argument("--enable-profiler", type=_bool, nargs="?", const=True, default=False, metavar="BOOL",
                   help="serve /debug/pprof/ (cProfile of scheduling cycles, thread stacks, tracemalloc heap) "
                        "on --profiler-port (default false)")
    r.add_argument("--profiler-port", type=_port, default=8182, help="port of the profiler (default 8182)")
    r.set_defaults(func=cmd_scheduler)
    w = sub.add_parser("webhook", help="run the admission webhooks: pods (GPU sharing env, runtimeClassName), "
                                       "Queue and PodGroup validation")
    w.add_argument("--port", type=int, default=9443, help="HTTPS port (default 9443)")
    w.add_argument("--bind-address", default="0.0.0.0")
    w.add_argument("--tls-cert-file", help="serving certificate (default: self-signed, generated at start)")
    w.add_argument("--tls-private-key-file", help="its private key")
    w.add_argument("--tls-san", action="append", metavar="NAME",
                   help="extra DNS name or IP of a generated certificate (repeatable)")
    w.add_argument("--write-ca-file", metavar="FILE", help="write the serving certificate (PEM) here, e.g. for caBundle")
    w.add_argument("--gpu-pod-runtime-class-name", default="nvidia",
                   help="runtimeClassName set on GPU pods without one (default nvidia; empty: off)")
    w.add_argument("--scheduler-name", default="kai-scheduler", help="only pods with this schedulerName are handled")
    w.add_argument("--gpu-sharing-enabled", type=_bool, default=True, metavar="BOOL",
                   help="admit fraction pods (default true; false rejects them as KAI does)")
    w.add_argument("--nri-plugin-enabled", type=_bool, default=False, metavar="BOOL",
                   help="skip the NVIDIA_VISIBLE_DEVICES env var (device visibility set by the NRI plugin)")
    w.set_defaults(func=cmd_webhook)
    n = sub.add_parser("node-scale-adjuster",
                       help="create scaling pods so cluster autoscalers add GPUs for unschedulable GPU-sharing pods")
    n.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then ~/.kube/config)")
    n.add_argument("--scheduler-name", default="kai-scheduler", help="the scheduler whose pods are watched")
    n.add_argument("--scale-adjust-namespace", default="kai-scale-adjust", metavar="NAMESPACE",
                   help="namespace of the scaling pods (default kai-scale-adjust)")
    n.add_argument("--scaling-pod-image", default="kai:latest", help="image of the scaling pods (default kai:latest)")
    n.add_argument("--scaling-pod-command", nargs="*", default=["/bin/true"], metavar="ARG",
                   help="their command (default /bin/true: they exit at once once a node runs them; none: "
                        "the image's own)")
    n.add_argument("--scaling-pod-app-label", default="scaling-pod", help="their `app` label (default scaling-pod)")
    n.add_argument("--scaling-pod-service-account", default="scaling-pod",
                   help="their ServiceAccount (default scaling-pod)")
    n.add_argument("--gpu-memory-to-fraction-ratio", type=float, default=0.1, metavar="R",
                   help="GPUs counted per gpu-memory pod (default 0.1: one GPU per 10 pods)")
    n.add_argument("--cool-down-seconds", type=float, default=60.0,
                   help="after deleting a scaling pod, create none for this long (default 60)")
    n.add_argument("--period", type=float, default=5.0, help="seconds between passes without events (default 5)")
    n.set_defaults(func=cmd_node_scale_adjuster)
    st = sub.add_parser("status", help="show queues, pending jobs and GPU occupancy of a live cluster (read-only)")
    st.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    st.add_argument("--context", help="kubeconfig context (default: the current context)")
    st.add_argument("--config", help="scheduler config YAML for the fair-share computation "
                                     "(default: read from --config-map)")
    st.add_argument("--config-map", default="kai-scheduler/kai-scheduler-config", metavar="NAMESPACE/NAME",
                    help="the scheduler's ConfigMap (default kai-scheduler/kai-scheduler-config; "
                         "KAI's defaults when it is absent)")
    st.add_argument("--scheduler-name", default="kai-scheduler")
    st.add_argument("--output", "-o", choices=["text", "json"], default="text")
    st.add_argument("--watch", "-w", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between --watch refreshes (default 2)")
    st.add_argument("--top", type=int, default=10, help="pending PodGroups to show (default 10)")
    st.add_argument("--resources", default=None, metavar="LIST",
                    help="queue bars to draw, e.g. gpu or gpu,cpu,memory (default: all three when the "
                         "terminal is at least 120 columns wide, else gpu)")
    st.add_argument("--width", type=int, default=None, help="columns (default: the terminal's)")
    st.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    st.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None, prog: str = "kai") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


def kubectl_main() -> int:
    """``kubectl kai ...``: kubectl runs this as the plugin ``kubectl-kai`` with the words after ``kai``."""
    return main(sys.argv[1:], prog="kubectl kai")


if __name__ == "__main__":
    sys.exit(main())

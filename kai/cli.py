"""Command line: ``kai simulate`` (offline, over manifests), ``kai scheduler`` (live) and ``kai webhook``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import structlog

import kai
from kai.config import ConfigError, default_config, load_config, parse_config

EXAMPLE = os.path.join(os.path.dirname(__file__), "examples", "quickstart.yaml")


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else (logging.INFO if verbosity == 1 else logging.DEBUG)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def cmd_simulate(args) -> int:
    from kai.sim.loader import LoadError, load_manifests
    from kai.sim.simulator import format_table, simulate

    paths = args.paths or [EXAMPLE]
    try:
        manifests = load_manifests(paths, keep_going=True)
        if args.config:
            config = load_config(args.config)
        elif manifests.config_docs:
            where, doc = manifests.config_docs[-1]
            config = parse_config(doc, where)
        else:
            config = default_config()
    except (LoadError, ConfigError) as exc:
        print(f"kai simulate: error: {exc}", file=sys.stderr)
        return 2
    if args.cycles < 1:
        print("kai simulate: error: --cycles must be >= 1", file=sys.stderr)
        return 2
    apply_flags(config, args)
    for err in manifests.errors:        # bad objects are left out; the rest is simulated
        print(f"kai simulate: error: {err}", file=sys.stderr)
    report = simulate(manifests, config, cycles=args.cycles, interval=args.interval)
    if args.output == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(report))
    return 2 if manifests.errors else 0


def cmd_scheduler(args) -> int:
    from kai.controller.main import run_controller   # live controller (needs a cluster)

    try:
        config = load_config(args.config) if args.config else default_config()
    except ConfigError as exc:
        print(f"kai scheduler: error: {exc}", file=sys.stderr)
        return 2
    return run_controller(args, apply_flags(config, args))


def cmd_webhook(args) -> int:
    from kai.admission.webhook import run_webhook   # pod admission webhook (KAI's gpusharing, runtimeenforcement)

    return run_webhook(args)


def _bool(v: str) -> bool:
    low = v.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


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
    p.add_argument("--max-consolidation-preemptees", type=int, default=16,
                   help="jobs consolidation may move for one pending job (default 16; 0 disables)")
    p.add_argument("--allow-consolidating-reclaim", type=_bool, default=True, metavar="BOOL",
                   help="reclaim may move victims instead of evicting them (default true)")
    p.add_argument("--default-staleness-grace-period", type=_duration, default=60.0, metavar="DURATION",
                   help="evict a running gang below minMember after this long (default 60s; negative: never)")


def apply_flags(config, args):
    """Copy the algorithm flags onto the loaded config."""
    config.max_consolidation_preemptees = args.max_consolidation_preemptees
    config.allow_consolidating_reclaim = args.allow_consolidating_reclaim
    config.default_staleness_grace_period = args.default_staleness_grace_period
    return config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kai", description="GPU batch scheduler for Kubernetes, KAI-Scheduler compatible")
    p.add_argument("--version", action="version", version=f"kai {kai.__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("simulate", help="run the scheduler offline over manifests")
    s.add_argument("paths", nargs="*", metavar="FILE_OR_DIR",
                   help="manifests (YAML/JSON, multi-document); default: the bundled quickstart example")
    s.add_argument("--config", help="scheduler config YAML (KAI format: actions, tiers[].plugins[])")
    s.add_argument("--cycles", type=int, default=1, help="cycles to run, feeding results back (default 1)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds of simulated time per cycle (default 1)")
    s.add_argument("--output", choices=["table", "json"], default="table")
    _add_algorithm_flags(s)
    s.set_defaults(func=cmd_simulate)
    r = sub.add_parser("scheduler", help="run the scheduler against a cluster")
    _add_algorithm_flags(r)
    r.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then ~/.kube/config)")
    r.add_argument("--config", help="scheduler config YAML")
    r.add_argument("--scheduler-name", default="kai-scheduler")
    r.add_argument("--schedule-period", type=float, default=1.0, help="seconds between cycles")
    r.add_argument("--leader-elect", action="store_true")
    r.add_argument("--namespace", default="kai-scheduler", help="namespace of the leader-election Lease")
    r.add_argument("--metrics-port", type=int, default=8080, help="/metrics, /healthz, /readyz port (0: any free)")
    r.add_argument("--metrics-namespace", default="kai", help="prefix of the Prometheus metric names")
    r.add_argument("--lease-name", default=None, help="leader-election Lease name (default: the scheduler name)")
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
    r.set_defaults(func=cmd_scheduler)
    w = sub.add_parser("webhook", help="run the pod admission webhook (GPU sharing env, runtimeClassName)")
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

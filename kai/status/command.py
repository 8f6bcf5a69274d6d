"""``kai status`` (and ``kubectl kai status``): flags -> one answer, or a refreshing one with ``--watch``.

Called by ``kai.cli``; the data comes from ``kai.status.live``, the drawing from
``kai.status.render``. Exit codes: 0 answered, 1 the cluster could not be read (message on
stderr), 2 bad flags or config.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

from kai.config import ConfigError, load_config
from kai.status.live import StatusError, connect, status
from kai.status.render import render

CLEAR = "\x1b[H\x1b[2J"


def _use_color(mode: str, stream) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def run_status(args) -> int:
    out = sys.stdout
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print(f"kai status: error: {exc}", file=sys.stderr)
        return 2
    resources = None
    if args.resources:
        resources = tuple(r.strip() for r in args.resources.split(",") if r.strip())
        bad = [r for r in resources if r not in ("gpu", "cpu", "memory")]
        if bad or not resources:
            print(f"kai status: error: --resources takes gpu, cpu, memory; got {args.resources!r}", file=sys.stderr)
            return 2
    if args.top < 0 or args.interval <= 0:
        print("kai status: error: --top must be >= 0 and --interval > 0", file=sys.stderr)
        return 2
    cm = args.config_map if args.config_map and "/" in args.config_map else None
    if args.config_map and cm is None:
        print(f"kai status: error: --config-map wants NAMESPACE/NAME, got {args.config_map!r}", file=sys.stderr)
        return 2
    try:
        client = connect(args.kubeconfig, args.context)
    except StatusError as exc:
        print(f"kai status: error: {exc}", file=sys.stderr)
        return 1
    color = _use_color(args.color, out)
    try:
        return _loop(args, client, config, cm, resources, color, out)
    except KeyboardInterrupt:
        if args.watch:
            out.write("\n")
            return 0
        raise


def _loop(args, client, config, cm, resources, color, out) -> int:
    while True:
        try:
            doc = status(client, config, cm, top=args.top, scheduler_name=args.scheduler_name)
            err = None
        except StatusError as exc:
            doc, err = None, str(exc)
        if err is not None and not args.watch:
            print(f"kai status: error: {err}", file=sys.stderr)
            return 1
        if args.output == "json":
            text = json.dumps(doc if doc is not None else {"error": err}, indent=None if args.watch else 2)
        else:
            width = args.width or shutil.get_terminal_size((120, 40)).columns
            text = render(doc, width=width, color=color, resources=resources, top=args.top) if doc is not None \
                else f"kai status: error: {err}"
            if args.watch:
                stamp = time.strftime("%H:%M:%S")
                text = f"{CLEAR}{text}\n\n(every {args.interval:g}s, last {stamp}; Ctrl-C to stop)"
        out.write(text + "\n")
        out.flush()
        if not args.watch:
            return 0
        time.sleep(args.interval)

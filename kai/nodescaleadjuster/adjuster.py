"""``kai node-scale-adjuster``: the live loop that keeps scaling pods in line with kai's
unschedulable GPU-sharing pods (the rules are in ``kai.nodescaleadjuster.calculator``).

Two informers feed it (``kai.cache.watch``). The first holds our scheduler's unbound pods: a
server-side ``fieldSelector`` (``spec.schedulerName=<name>,spec.nodeName=``) keeps bound pods
and other schedulers' pods off the wire. The second holds the pods of the scaling namespace.
Every event wakes the loop, and a pass runs at least every ``--period`` seconds. A pass:
1. deletes the scaling pods no longer needed;
2. creates the missing ones. Their name is derived from the fraction pod, so a retry or a
   second replica gets 409 and changes nothing;
3. marks each new scaling pod ``PodScheduled=False`` / ``Unschedulable`` at once, as KAI's
   does, so an autoscaler acts without waiting for the default scheduler.

Failed calls are logged and retried by the next pass. Called by ``kai.cli``
(``kai node-scale-adjuster``).
"""
from __future__ import annotations

import queue
import signal
import threading
import time

import structlog

from kai.api.k8s import Pod
from kai.cache.kubeclient import ApiError, KubeClient, KubeconfigError
from kai.cache.watch import Informer, Resource, wait_synced
from kai.nodescaleadjuster.calculator import Plan, Settings, plan, scaling_pod_manifest

log = structlog.get_logger("kai.nodescaleadjuster")


class NodeScaleAdjuster:
    def __init__(self, client: KubeClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.events: queue.Queue = queue.Queue()
        s = settings
        self.pending = Informer(client, Resource("Pod", "/api/v1/pods", Pod), self.events,
                                params={"fieldSelector": f"spec.schedulerName={s.scheduler_name},spec.nodeName="})
        self.scaling = Informer(client, Resource("Pod", f"/api/v1/namespaces/{s.namespace}/pods", Pod), self.events)
        self._last_delete = float("-inf")
        self.created = 0
        self.deleted = 0

    def start(self) -> NodeScaleAdjuster:
        self.pending.start()
        self.scaling.start()
        return self

    def stop(self) -> None:
        self.pending.stop(timeout=2.0)
        self.scaling.stop(timeout=2.0)

    def synced(self, timeout: float | None = None) -> bool:
        return wait_synced({"pending": self.pending, "scaling": self.scaling}, timeout)

    def _pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.settings.namespace}/pods"

    def run_once(self, now: float | None = None) -> Plan:
        """One adjust pass over what the informers hold; returns what it decided."""
        now = time.monotonic() if now is None else now
        cooling = now - self._last_delete < self.settings.cool_down_seconds
        p = plan(list(self.pending.store.values()), list(self.scaling.store.values()), self.settings, cooling)
        for name in p.delete:
            try:
                self.client.delete(f"{self._pods_path()}/{name}")
                self.deleted += 1
                log.info("deleted scaling pod", pod=name)
            except ApiError as exc:
                if exc.status != 404:
                    log.warning("deleting scaling pod failed", pod=name, error=str(exc))
                    continue
            self._last_delete = now
        for pod, devices in p.create:
            body = scaling_pod_manifest(pod, devices, self.settings)
            name = body["metadata"]["name"]
            try:
                self.client.post(self._pods_path(), body)
            except ApiError as exc:
                if exc.status != 409:
                    log.warning("creating scaling pod failed", pod=name, error=str(exc),
                                for_pod=f"{pod.metadata.namespace}/{pod.metadata.name}")
                    continue
            try:
                self.client.patch(f"{self._pods_path()}/{name}/status", {"status": {"conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": f"stands in for {pod.metadata.namespace}/{pod.metadata.name}, which needs "
                                f"{devices} GPU(s) shared"}]}})
            except ApiError as exc:
                log.warning("marking scaling pod unschedulable failed", pod=name, error=str(exc))
            self.created += 1
            log.info("created scaling pod", pod=name, gpus=devices,
                     for_pod=f"{pod.metadata.namespace}/{pod.metadata.name}", needed=p.needed)
        return p

    def run(self, stop: threading.Event, period: float = 5.0) -> None:
        """Pass after pass until ``stop``: at each burst of events, at least every ``period``."""
        while not stop.is_set() and not self.synced(timeout=1.0):
            pass
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:   # noqa: BLE001 - a failing pass is logged, the next one retries
                log.exception("adjust pass failed", error=str(exc))
            try:
                self.events.get(timeout=period)
            except queue.Empty:
                continue
            stop.wait(0.2)                    # let a burst of events arrive before the next pass
            while True:
                try:
                    self.events.get_nowait()
                except queue.Empty:
                    break


def run_node_scale_adjuster(args) -> int:
    """Entry point of ``kai node-scale-adjuster``; exit code 0 on SIGTERM/SIGINT, 2 without credentials."""
    try:
        client = KubeClient.from_kubeconfig(getattr(args, "kubeconfig", None))
    except KubeconfigError as exc:
        log.error("no cluster credentials", error=str(exc))
        return 2
    settings = Settings(scheduler_name=args.scheduler_name, namespace=args.scale_adjust_namespace,
                        image=args.scaling_pod_image, command=tuple(args.scaling_pod_command or ()),
                        app_label=args.scaling_pod_app_label, service_account=args.scaling_pod_service_account,
                        gpu_memory_to_fraction_ratio=args.gpu_memory_to_fraction_ratio,
                        cool_down_seconds=args.cool_down_seconds)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("signal received, stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    nsa = NodeScaleAdjuster(client, settings).start()
    log.info("node-scale-adjuster started", scheduler=settings.scheduler_name, namespace=settings.namespace)
    try:
        nsa.run(stop, period=args.period)
    finally:
        nsa.stop()
        log.info("stopped", created=nsa.created, deleted=nsa.deleted)
    return 0

"""Builders of DRA objects for tests and benchmarks (dicts in API shape, decoded like the API).

``gpu_slice("node-1", 8)`` publishes eight devices on one node the way a GPU driver does;
``device_class``, ``claim`` and ``template`` build the rest. Everything goes through
``msgspec.convert`` so the objects are exactly what the informers would decode.
"""
from __future__ import annotations

from typing import Any

import msgspec

from kai.api.dra import DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice
from kai.api.k8s import Pod

DRIVER = "gpu.example.com"


def attr(value: Any) -> dict[str, Any]:
    """An attribute value in API shape: bool, int, str; ``("version", "1.2.3")`` for versions."""
    if isinstance(value, tuple) and value[0] == "version":
        return {"version": value[1]}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    return {"string": value}


def device(name: str, attributes: dict[str, Any] | None = None, capacity: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "attributes": {k: attr(v) for k, v in (attributes or {}).items()},
                         "capacity": {k: {"value": v} for k, v in (capacity or {}).items()}}
    d.update(extra)
    return d


def gpu_devices(n: int, model: str = "A100", memory: str = "80Gi") -> list[dict[str, Any]]:
    return [device(f"gpu-{i}", {"model": model, "index": i, "numa": i * 2 // max(n, 1)},
                   {"memory": memory}) for i in range(n)]


def resource_slice(name: str, devices: list[dict[str, Any]], driver: str = DRIVER, pool: str | None = None,
                   node: str | None = None, node_selector: dict | None = None, all_nodes: bool = False,
                   generation: int = 1, count: int = 1) -> ResourceSlice:
    spec: dict[str, Any] = {"driver": driver, "pool": {"name": pool or node or name, "generation": generation,
                                                       "resourceSliceCount": count}, "devices": devices}
    if node:
        spec["nodeName"] = node
    elif node_selector is not None:
        spec["nodeSelector"] = node_selector
    elif all_nodes:
        spec["allNodes"] = True
    return msgspec.convert({"metadata": {"name": name}, "spec": spec}, ResourceSlice)


def gpu_slice(node: str, n: int = 8, driver: str = DRIVER, **kw: Any) -> ResourceSlice:
    return resource_slice(f"{node}-{driver}", gpu_devices(n, **kw), driver=driver, node=node)


def device_class(name: str, *expressions: str, config: list[dict] | None = None) -> DeviceClass:
    return msgspec.convert({"metadata": {"name": name}, "spec": {
        "selectors": [{"cel": {"expression": e}} for e in expressions], "config": config or []}}, DeviceClass)


def exactly(cls: str, count: int = 1, *selectors: str, mode: str = "ExactCount", admin: bool = False,
            tolerations: list[dict] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"deviceClassName": cls, "allocationMode": mode,
                         "selectors": [{"cel": {"expression": s}} for s in selectors]}
    if mode == "ExactCount":
        e["count"] = count
    if admin:
        e["adminAccess"] = True
    if tolerations:
        e["tolerations"] = tolerations
    return e


def request(name: str, cls: str = "gpu", count: int = 1, *selectors: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "exactly": exactly(cls, count, *selectors, **kw)}


def first_available(name: str, *subs: tuple[str, str, int]) -> dict[str, Any]:
    return {"name": name, "firstAvailable": [{"name": s, "deviceClassName": c, "count": n} for s, c, n in subs]}


def claim_spec(*requests: dict[str, Any], constraints: list[dict] | None = None,
               config: list[dict] | None = None) -> dict[str, Any]:
    return {"devices": {"requests": list(requests), "constraints": constraints or [], "config": config or []}}


def claim(name: str, *requests: dict[str, Any], namespace: str = "default", status: dict | None = None,
          **kw: Any) -> ResourceClaim:
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
                           "spec": claim_spec(*requests, **kw)}
    if status:
        obj["status"] = status
    return msgspec.convert(obj, ResourceClaim)


def template(name: str, *requests: dict[str, Any], namespace: str = "default", **kw: Any) -> ResourceClaimTemplate:
    return msgspec.convert({"metadata": {"name": name, "namespace": namespace},
                            "spec": {"spec": claim_spec(*requests, **kw)}}, ResourceClaimTemplate)


def pod_with_claims(name: str, namespace: str = "default", claims: dict[str, str] | None = None,
                    templates: dict[str, str] | None = None) -> Pod:
    """A pod whose ``spec.resourceClaims`` name claims (entry -> claim) and templates."""
    entries = [{"name": e, "resourceClaimName": c} for e, c in (claims or {}).items()]
    entries += [{"name": e, "resourceClaimTemplateName": t} for e, t in (templates or {}).items()]
    return msgspec.convert({"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
                            "spec": {"schedulerName": "kai-scheduler", "resourceClaims": entries,
                                     "containers": [{"name": "c", "resources": {
                                         "claims": [{"name": e["name"]} for e in entries]}}]}}, Pod)

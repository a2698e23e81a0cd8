"""The API of yurt-iot: pydantic models of every custom resource, the single source of truth for `crds/`.

Names are imported on first use: building every model costs memory and start-up time, and a gateway that only
runs devices needs just `yurt_iot.api.iot`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Device": "iot",
    "DeviceProfile": "iot",
    "DeviceService": "iot",
    "NodePool": "apps",
    "NodePoolV1beta1": "apps",
    "YurtAppDaemon": "apps",
    "YurtAppSet": "apps",
    "ObjectMeta": "meta",
    "Resource": "meta",
    "ResourceType": "meta",
    "RESOURCE_MODELS": "registry",
    "UnknownKindError": "registry",
    "model_for": "registry",
    "parse_resource": "registry",
    "build_crds": "crd",
    "crd_files": "crd",
    "write_crds": "crd",
}

__all__ = [
    "RESOURCE_MODELS",
    "Device",
    "DeviceProfile",
    "DeviceService",
    "NodePool",
    "NodePoolV1beta1",
    "ObjectMeta",
    "Resource",
    "ResourceType",
    "UnknownKindError",
    "YurtAppDaemon",
    "YurtAppSet",
    "build_crds",
    "crd_files",
    "model_for",
    "parse_resource",
    "write_crds",
]

if TYPE_CHECKING:
    from yurt_iot.api.apps import NodePool, NodePoolV1beta1, YurtAppDaemon, YurtAppSet
    from yurt_iot.api.crd import build_crds, crd_files, write_crds
    from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
    from yurt_iot.api.meta import ObjectMeta, Resource, ResourceType
    from yurt_iot.api.registry import RESOURCE_MODELS, UnknownKindError, model_for, parse_resource


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

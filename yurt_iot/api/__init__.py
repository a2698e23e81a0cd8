"""The API of yurt-iot: pydantic models of every custom resource, the single source of truth for `crds/`."""

from yurt_iot.api.apps import NodePool, NodePoolV1beta1, YurtAppDaemon, YurtAppSet
from yurt_iot.api.crd import build_crds, crd_files, write_crds
from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
from yurt_iot.api.meta import ObjectMeta, Resource, ResourceType
from yurt_iot.api.registry import RESOURCE_MODELS, UnknownKindError, model_for, parse_resource

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

"""Every resource model, and finding the model of a manifest by its apiVersion and kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yurt_iot.api.apps import NodePool, NodePoolV1beta1, YurtAppDaemon, YurtAppSet
from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
from yurt_iot.api.meta import Resource

#: Every resource model; the stored version comes first among the versions of one CRD.
RESOURCE_MODELS: tuple[type[Resource], ...] = (
    Device,
    DeviceService,
    DeviceProfile,
    NodePool,
    NodePoolV1beta1,
    YurtAppSet,
    YurtAppDaemon,
)

_BY_TYPE = {(m.resource_type.api_version, m.resource_type.kind): m for m in RESOURCE_MODELS}


class UnknownKindError(ValueError):
    """The manifest's apiVersion and kind are not a resource of ours."""


def model_for(api_version: str, kind: str) -> type[Resource]:
    try:
        return _BY_TYPE[(api_version, kind)]
    except KeyError:
        raise UnknownKindError(f"no resource {kind} in {api_version}") from None


def parse_resource(manifest: Mapping[str, Any]) -> Resource:
    """Validate a manifest (as read from YAML or the API server) into its model."""
    return model_for(str(manifest.get("apiVersion")), str(manifest.get("kind"))).model_validate(manifest)

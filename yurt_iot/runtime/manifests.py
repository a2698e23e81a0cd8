"""Devices and profiles from manifest files: the same YAML a user would `kubectl apply`, for sites without
Kubernetes (`yurt-iot gateway --manifests`) and for the demo."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from yurt_iot.api.iot import Device, DeviceProfile, DeviceService, edge_name
from yurt_iot.api.meta import Resource, describe

#: The kinds a gateway runs; other objects in the same files (NodePools, YurtAppSets) are skipped.
_IOT_KINDS: dict[tuple[str, str], type[Resource]] = {
    (m.resource_type.api_version, m.resource_type.kind): m for m in (Device, DeviceProfile, DeviceService)
}


class ManifestError(ValueError):
    """A manifest file cannot be used; the message names the file and, where known, the object and field."""


def load_manifests(paths: Iterable[Path]) -> list[Resource]:
    """The Devices, DeviceProfiles and DeviceServices in the given files and directories (*.yaml / *.yml,
    recursively), validated."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path])
    objects: list[Resource] = []
    for file in files:
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
        except (OSError, yaml.YAMLError) as error:
            raise ManifestError(f"{file}: {error}") from error
        for doc in docs:
            if not isinstance(doc, dict):
                raise ManifestError(f"{file}: a manifest must be an object, not {type(doc).__name__}")
            model = _IOT_KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
            if model is None:
                continue
            try:
                objects.append(model.model_validate(doc))
            except ValidationError as error:
                name = (doc.get("metadata") or {}).get("name", "?")
                raise ManifestError(f"{file}: {doc.get('kind', '?')} {name}: {describe(error)}") from error
    return objects


def device_profiles(objects: Iterable[Resource]) -> list[tuple[Device, DeviceProfile]]:
    """Each Device with the DeviceProfile it names (by edge name, as OpenYurt matches them)."""
    objects = list(objects)
    profiles = {edge_name(o): o for o in objects if isinstance(o, DeviceProfile)}
    pairs = []
    for device in (o for o in objects if isinstance(o, Device)):
        profile = profiles.get(device.spec.profile_name)
        if profile is None:
            raise ManifestError(
                f"Device {device.metadata.name}: spec.profileName {device.spec.profile_name!r} names no DeviceProfile"
            )
        pairs.append((device, profile))
    return pairs

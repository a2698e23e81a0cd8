"""Manifest files: the same YAML a user would `kubectl apply`, read for sites without Kubernetes
(`yurt-iot gateway --manifests`), for the demo, and checked by `yurt-iot validate` before they reach a cluster.

Every problem is reported as ``file:doc-index kind/name: field.path: message``, worded as the API server words
it where the two agree (``Required value``, ``Unsupported value``, ``unknown field``), so that a user fixing a
file sees the same message locally as from `kubectl apply`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from yurt_iot.api.iot import Device, DeviceProfile, DeviceService, edge_name
from yurt_iot.api.meta import Resource
from yurt_iot.api.registry import RESOURCE_MODELS

#: The kinds a gateway runs; other objects in the same files (NodePools, YurtAppSets) are skipped.
_IOT_KINDS: dict[tuple[str, str], type[Resource]] = {
    (m.resource_type.api_version, m.resource_type.kind): m for m in (Device, DeviceProfile, DeviceService)
}
_ALL_KINDS: dict[tuple[str, str], type[Resource]] = {
    (m.resource_type.api_version, m.resource_type.kind): m for m in RESOURCE_MODELS
}


class ManifestError(ValueError):
    """A manifest file cannot be used; the message names the file and, where known, the object and field."""


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file, and where it came from."""

    file: Path
    index: int
    """Position of the document in its file, from 0."""
    content: Any

    @property
    def where(self) -> str:
        """``file:index kind/name``, the prefix of every message about this document."""
        doc = self.content if isinstance(self.content, dict) else {}
        meta = doc.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        return f"{self.file}:{self.index} {doc.get('kind', '?')}/{name}"


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """The *.yaml / *.yml files given, directories searched recursively. Hidden entries are skipped: a mounted
    ConfigMap keeps a second copy of every file under ``..data/``, and editors keep swap files there."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        files.extend(
            sorted(
                p for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml") and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        )  # fmt: skip
    return files


def read_documents(paths: Iterable[Path]) -> Iterator[Document]:
    """Every non-empty YAML document of the files; ManifestError for a file that cannot be read or parsed."""
    for file in manifest_files(paths):
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as error:
            raise ManifestError(f"{file}: {error}") from error
        yield from (Document(file, index, doc) for index, doc in enumerate(docs) if doc is not None)


def field_errors(error: ValidationError) -> list[str]:
    """``field.path: message`` for each problem, in the API server's words where it has its own."""
    return [f"{_path(item) or '<root>'}: {_message(item)}" for item in error.errors(include_url=False)]


def _path(item: ErrorDetails) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")


def _message(item: ErrorDetails) -> str:
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "missing":
        return "Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{_path(item)}"'
    if kind == "literal_error":
        allowed = ", ".join(f'"{v}"' for v in re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f'Unsupported value: "{item["input"]}": supported values: {allowed}'
    if kind == "string_pattern_mismatch":
        return f"Invalid value: \"{item['input']}\": {_path(item)} in body should match '{ctx.get('pattern')}'"
    return item["msg"]


def _parse(doc: Document, kinds: dict[tuple[str, str], type[Resource]]) -> Resource | None:
    """The document as its model; None if its kind is not among `kinds`; ManifestError if it is invalid."""
    if not isinstance(doc.content, dict):
        raise ManifestError(f"{doc.file}:{doc.index}: a manifest must be an object, not {type(doc.content).__name__}")
    model = kinds.get((str(doc.content.get("apiVersion")), str(doc.content.get("kind"))))
    if model is None:
        return None
    try:
        resource = model.model_validate(doc.content)
    except ValidationError as error:
        raise ManifestError("\n".join(f"{doc.where}: {line}" for line in field_errors(error))) from error
    if not (resource.metadata.name or resource.metadata.generate_name):
        raise ManifestError(f"{doc.where}: metadata.name: Required value: name or generateName is required")
    return resource


def load_manifests(paths: Iterable[Path]) -> list[Resource]:
    """The Devices, DeviceProfiles and DeviceServices in the given files and directories, validated."""
    return [r for doc in read_documents(paths) if (r := _parse(doc, _IOT_KINDS)) is not None]


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


# --- yurt-iot validate ---------------------------------------------------------------------------------------


@dataclass
class Report:
    """What `validate_manifests` found: errors make the files unusable, warnings may be fine in a cluster."""

    objects: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate_manifests(paths: Iterable[Path]) -> Report:
    """Check every document of the files against the CRD models, and the references between IoT objects."""
    report = Report()
    parsed: list[tuple[Document, Resource]] = []
    for file in manifest_files(paths):
        try:
            docs = list(read_documents([file]))
        except ManifestError as error:
            report.errors.append(str(error))
            continue
        for doc in docs:
            report.objects += 1
            try:
                resource = _parse(doc, _ALL_KINDS)
            except ManifestError as error:
                report.errors.extend(str(error).splitlines())
                continue
            if resource is None:
                report.errors.append(f"{doc.where}: {_unknown_kind(doc.content)}")
            else:
                parsed.append((doc, resource))
    report.warnings.extend(_dangling_references(parsed))
    return report


def _unknown_kind(content: dict[str, Any]) -> str:
    if not content.get("apiVersion") or not content.get("kind"):
        return "apiVersion and kind: Required value"
    known = ", ".join(sorted({f"{kind} ({version})" for version, kind in _ALL_KINDS}))
    return f"no kind {content['kind']!r} in {content['apiVersion']!r}; yurt-iot knows {known}"


def _dangling_references(parsed: list[tuple[Document, Resource]]) -> Iterator[str]:
    """Devices naming a profile or service missing from the files (they may exist in the cluster), and objects
    given twice (the second `kubectl apply` would silently overwrite the first)."""
    present = {(type(r), edge_name(r)) for _, r in parsed if isinstance(r, DeviceProfile | DeviceService)}
    seen = Counter((type(r).__name__, r.metadata.namespace, r.metadata.name) for _, r in parsed)
    for doc, resource in parsed:
        key = (type(resource).__name__, resource.metadata.namespace, resource.metadata.name)
        if seen[key] > 1:
            yield f"{doc.where}: metadata.name: given {seen[key]} times in these files; the last one applied wins"
            seen[key] = 0  # warn once
        if not isinstance(resource, Device):
            continue
        for kind, field_path, name in (
            (DeviceProfile, "spec.profileName", resource.spec.profile_name),
            (DeviceService, "spec.serviceName", resource.spec.service_name),
        ):
            if (kind, name) not in present:
                yield (
                    f"{doc.where}: {field_path}: {kind.__name__} {name!r} is not in these files "
                    "(fine if it exists in the cluster)"
                )

"""Render CustomResourceDefinitions from the resource models.

Pydantic's JSON Schema is close to, but not, a Kubernetes *structural* schema: it uses `$ref`, expresses
optional fields as `anyOf [X, null]` and carries titles. `structural_schema` rewrites it into the form the
API server accepts, keeping descriptions (for `kubectl explain`), enums, patterns, bounds, CEL rules and
the scalar defaults the models declare, so that the server defaults an object exactly as pydantic does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import yaml

from yurt_iot.api.meta import Resource, ResourceType
from yurt_iot.api.registry import RESOURCE_MODELS

_DROPPED_KEYS = {"title", "examples", "$defs"}
_TYPE_META = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this object.",
    },
    "kind": {"type": "string", "description": "Kind is the REST resource this object represents."},
    "metadata": {"type": "object"},
}


def structural_schema(model: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of one resource version."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _convert(raw, defs)
    schema["properties"].update(copy.deepcopy(_TYPE_META))
    schema["required"] = [name for name in schema.get("required", []) if name not in _TYPE_META]
    if not schema["required"]:
        del schema["required"]
    return schema


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _flatten(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default":
            if isinstance(value, bool | int | float | str):
                out[key] = value
            elif isinstance(value, dict):
                out[key] = {}  # nested defaults then fill the object in
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out[key] = _convert(value, defs)
        elif key == "items":
            out[key] = _convert(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    _finish(out)
    return out


def _flatten(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` and drop the `null` of optional fields until neither is left at the top."""
    while True:
        node = dict(node)
        if "$ref" in node:
            target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**target, **node}  # the field's own description and extras win over the type's
        elif "anyOf" in node:
            variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
            if len(variants) != 1 and "additionalProperties" not in node:
                raise ValueError(f"a union is not a structural schema: {variants}")
            node = {**variants[0], **node}
        else:
            return node


def _finish(out: dict[str, Any]) -> None:
    """Fill in what Kubernetes needs and JSON Schema leaves implicit."""
    if out.get("x-kubernetes-preserve-unknown-fields"):
        return
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True


def _version(model: type[Resource]) -> dict[str, Any]:
    rt = model.resource_type
    version: dict[str, Any] = {
        "name": rt.version,
        "served": True,
        "storage": rt.storage,
        "schema": {"openAPIV3Schema": structural_schema(model)},
        "subresources": {"status": {}},
    }
    if rt.printer_columns:
        columns = []
        for col in rt.printer_columns:
            entry: dict[str, Any] = {"name": col.name, "jsonPath": col.json_path, "type": col.type}
            if col.description:
                entry["description"] = col.description
            if col.priority:
                entry["priority"] = col.priority
            columns.append(entry)
        version["additionalPrinterColumns"] = columns
    if rt.deprecation_warning:
        version["deprecated"] = True
        version["deprecationWarning"] = rt.deprecation_warning
    return version


def build_crd(models: Iterable[type[Resource]]) -> dict[str, Any]:
    """One CRD serving every given version of a resource (they must share group and plural)."""
    models = list(models)
    first: ResourceType = models[0].resource_type
    names: dict[str, Any] = {
        "kind": first.kind,
        "listKind": f"{first.kind}List",
        "plural": first.plural,
        "singular": first.singular,
    }
    if first.short_names:
        names["shortNames"] = list(first.short_names)
    if first.categories:
        names["categories"] = list(first.categories)
    spec: dict[str, Any] = {
        "group": first.group,
        "names": names,
        "scope": first.scope,
        "versions": [_version(m) for m in models],
    }
    if len(models) > 1:
        # The older versions are subsets of the stored one: only apiVersion changes on conversion.
        spec["conversion"] = {"strategy": "None"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": first.crd_name},
        "spec": spec,
    }


def build_crds() -> Iterator[dict[str, Any]]:
    """Every CRD of the project, one per group and plural."""
    for _, versions in groupby(RESOURCE_MODELS, key=lambda m: m.resource_type.crd_name):
        yield build_crd(versions)


def render(crd: dict[str, Any]) -> str:
    return yaml.safe_dump(crd, sort_keys=True, width=120)


def crd_files() -> dict[str, str]:
    """File name -> YAML text, as `yurt-iot crds` writes them to `crds/`."""
    return {f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml": render(crd) for crd in build_crds()}


def write_crds(directory: Path) -> list[Path]:
    """Write every CRD into `directory`, removing stale `*.yaml` files there; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = crd_files()
    for stale in directory.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written

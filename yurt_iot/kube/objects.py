"""Object keys and small pure functions over JSON objects, shared by the cache, the queue and the helpers.

Objects travel as plain JSON dicts, exactly as the API server sends them, so the core works for every kind
(our CRDs, Leases, Nodes, ...); a controller validates into its pydantic model where it needs typed access.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Obj", "ObjectKey", "apply_merge_patch", "field_value", "object_key"]

Obj = dict[str, Any]
"""A Kubernetes object as decoded JSON."""


class ObjectKey(NamedTuple):
    """What a work queue holds and a reconciler receives: which object, never what happened to it.

    `namespace` is "" for cluster-scoped objects. `str(key)` is client-go's "namespace/name" form.
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    """The key of an object; a missing metadata.name is an error naming the field."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError(f"metadata.name: required to key a {obj.get('kind') or 'object'}")
    return ObjectKey(str(meta.get("namespace") or ""), str(name))


def field_value(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path ("spec.nodePool"), or None where any step is missing."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch applied to a copy of `target`: what the server would store.

    Lets a helper tell beforehand whether a merge patch would change anything, and skip the write if not.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result

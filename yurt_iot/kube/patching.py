"""Writes every reconciler needs, made safe to repeat: finalizers and status only-if-changed.

Each helper first checks whether the write would change anything and makes none if not: a reconcile
that runs twice costs the API server nothing the second time, and unchanged status writes do not wake
every watcher of the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yurt_iot.kube.client import ResourceClient
from yurt_iot.kube.objects import Obj, apply_merge_patch, object_key

__all__ = ["ensure_finalizer", "patch_status_if_changed", "remove_finalizer"]


def _finalizers(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


async def _set_finalizers(resource: ResourceClient, obj: Obj, finalizers: list[str]) -> Obj:
    """Merge patch of the finalizer list, applied only to the resourceVersion we read (else `Conflict`):
    the list is replaced whole, so a concurrent change to it must not be overwritten."""
    key = object_key(obj)
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    patch = {"metadata": {"finalizers": finalizers, "resourceVersion": rv}}
    return await resource.patch(key.name, patch, namespace=key.namespace or None)


async def ensure_finalizer(resource: ResourceClient, obj: Obj, finalizer: str) -> Obj:
    """Add `finalizer` unless present; returns the object as it now is."""
    current = _finalizers(obj)
    if finalizer in current:
        return obj
    return await _set_finalizers(resource, obj, [*current, finalizer])


async def remove_finalizer(resource: ResourceClient, obj: Obj, finalizer: str) -> Obj:
    """Remove `finalizer` if present (the server deletes the object once none is left)."""
    current = _finalizers(obj)
    if finalizer not in current:
        return obj
    return await _set_finalizers(resource, obj, [f for f in current if f != finalizer])


async def patch_status_if_changed(resource: ResourceClient, obj: Obj, status: Mapping[str, Any]) -> Obj:
    """Merge `status` into the object's status through the status subresource, only if that changes it.

    `status` is a merge patch of the status (None removes a field), e.g. `{"synced": True}`. Returns the
    object unchanged (no request) when it already has that status, else the server's answer.
    """
    current = obj.get("status") or {}
    if apply_merge_patch(current, status) == current:
        return obj
    key = object_key(obj)
    return await resource.patch_status(key.name, {"status": dict(status)}, namespace=key.namespace or None)

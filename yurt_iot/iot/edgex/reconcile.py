"""The level-triggered reconcile of one CR and its EdgeX object, in both directions.

A key names an EdgeX object of one kind (``ObjectKey(namespace, <EdgeX name>)``): the CR of the pool that maps
to that name (:data:`EDGE_INDEX`) and the object core-metadata holds (:class:`EdgeState`) are brought in line:

==========================  ===============================================================================
CR being deleted            delete in EdgeX (a 409 "still in use" waits with backoff), release the finalizer
no CR, object in EdgeX      create the CR ``<pool>-<name>`` (label, `managed: false`): edge-discovered
cloud-owned CR              finalizer; create in EdgeX (once its service and profile are there; adopt one of
                            the same name) or update what differs; status from EdgeX
edge-owned CR               mirror EdgeX's spec and status; gone from EdgeX after it was synced: CR deleted
EdgeX unreachable           nothing is written to EdgeX and nothing deleted; the Synced condition says why
==========================  ===============================================================================

Every write is skipped when it would change nothing, so a reconcile that finds both sides in line makes no
request at all. OpenYurt's condition types are kept (``DeviceSynced``, ``DeviceManaging``, and the
DeviceService ones); DeviceProfile's status has no conditions, only `synced` and `id`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from yurt_iot.iot.edgex.edge_state import EdgeState
from yurt_iot.iot.edgex.errors import Conflict, EdgeXError, NotFound, Unavailable
from yurt_iot.iot.edgex.kinds import EdgeKind, EdgeObject, edge_name
from yurt_iot.iot.edgex.metadata import CoreMetadataClient
from yurt_iot.iot.pool import PoolScope
from yurt_iot.kube import (
    AlreadyExists,
    Informer,
    Invalid,
    Obj,
    ObjectKey,
    ResourceClient,
    Result,
    TerminalError,
    ensure_finalizer,
    patch_status_if_changed,
    remove_finalizer,
)
from yurt_iot.kube import NotFound as KubeNotFound
from yurt_iot.runtime.backoff import Backoff

__all__ = ["EDGE_INDEX", "PairReconciler", "by_edge_name", "with_condition"]

logger = logging.getLogger(__name__)

EDGE_INDEX = "edgex-name"
"""Informer index of CRs by ``<pool>/<EdgeX name>``."""

RETRY_CAP_S = 60.0
"""Longest wait before another try at an object EdgeX refused or that waits for another one."""


def by_edge_name(obj: Obj) -> list[str]:
    """Index function: ``<spec.nodePool>/<EdgeX name>`` for CRs that name a pool."""
    pool = (obj.get("spec") or {}).get("nodePool")
    return [f"{pool}/{edge_name(obj)}"] if pool else []


def with_condition(
    conditions: list[dict[str, Any]] | None, type_: str, status: bool, reason: str, message: str
) -> list[dict[str, Any]]:
    """`conditions` with `type_` set; lastTransitionTime moves only when the status flips, and an unchanged
    condition leaves the list as it was (so the status patch is skipped)."""
    current = list(conditions or [])
    value = "True" if status else "False"
    old = next((c for c in current if c.get("type") == type_), None)
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (value, reason, message):
        return current
    since = old.get("lastTransitionTime") if old is not None and old.get("status") == value else None
    new = {
        "type": type_,
        "status": value,
        "lastTransitionTime": since or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": reason,
        "message": message,
    }
    return [new if c is old else c for c in current] if old is not None else [*current, new]


def _deleting(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class PairReconciler:
    """`await reconciler(key)` for one kind; see the module docstring."""

    def __init__(
        self,
        kind: EdgeKind,
        scope: PoolScope,
        informer: Informer,
        resource: ResourceClient,
        edge: EdgeState,
        metadata: CoreMetadataClient,
        *,
        related: Callable[[str, str, EdgeObject | None], None],
        foreign: Callable[[Obj], bool] = lambda obj: False,
    ) -> None:
        """`related(kind, name, previous)` is told about every object this reconciler adds to or deletes from
        EdgeX, so that what waits for it gets another try. `foreign(obj)`: CRs another backend implements
        (native devices), left alone."""
        self.kind, self.scope, self.informer, self.resource = kind, scope, informer, resource
        self.edge, self.metadata = edge, metadata
        self._related, self._foreign = related, foreign
        self._retries: dict[str, Backoff] = {}

    def crs_for(self, name: str) -> list[Obj]:
        """The pool's CRs for EdgeX name `name`, oldest first: the first is synced, any other is a duplicate."""
        found = self.informer.store.by_index(EDGE_INDEX, f"{self.scope.pool}/{name}")
        found.sort(key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]))
        return found

    async def __call__(self, key: ObjectKey) -> Result | None:
        name = key.name
        found = self.crs_for(name)
        obj = found[0] if found else None
        for duplicate in found[1:]:
            why = f"EdgeX {self.kind.name} {name} is synced with {found[0]['metadata']['name']} already"
            await self._status(duplicate, {"synced": False}, False, "DuplicateEdgeXName", why)
        if obj is not None and self._foreign(obj):  # not EdgeX's: only a finalizer added before we knew goes
            with contextlib.suppress(KubeNotFound):
                await remove_finalizer(self.resource, obj, self.kind.finalizer)
            return None
        if obj is not None and _deleting(obj):
            return await self._finalize(obj, name)
        if not self.edge.reachable:  # None: not listed yet; the first listing enqueues everything
            if obj is not None and self.edge.reachable is False:
                await self._status(obj, {}, False, "EdgeXUnreachable", self.edge.error)
            return None
        edge = self.edge.get(self.kind.name, name)
        if obj is None:
            if edge is not None:
                await self._create_cr(edge)
            return None
        try:
            if self.kind.edge_owned(obj):
                return await self._mirror(obj, edge)
            return await self._push(obj, edge, name)
        except Unavailable as exc:
            self.edge.mark_unreachable(exc)
            await self._status(obj, {}, False, "EdgeXUnreachable", str(exc))
            return None
        except EdgeXError as exc:
            await self._status(obj, {"synced": False}, False, "EdgeXRejected", str(exc))
            return self._later(name)

    # -- the two directions ------------------------------------------------------------------------

    async def _push(self, obj: Obj, edge: EdgeObject | None, name: str) -> Result | None:
        """Cloud-owned: EdgeX gets the CR's object (created, adopted or updated)."""
        obj = await ensure_finalizer(self.resource, obj, self.kind.finalizer)
        try:
            if edge is None:
                missing = [f"{k} {n}" for k, n in self.kind.dependencies(obj) if self.edge.get(k, n) is None]
                if missing:
                    why = f"waiting for {', '.join(missing)} in EdgeX"
                    await self._status(obj, {"synced": False}, False, "WaitingForDependency", why)
                    return self._later(name)
                edge = await self._add(obj, name)
            else:
                spec = self.kind.spec_from_edge(edge, self.scope.pool, self.scope.namespace)
                if self.kind.drift(obj.get("spec") or {}, spec, self.kind.pushed):
                    await self.kind.update(self.metadata, obj, edge)
                    edge = await self.kind.get(self.metadata, name)
                    self.edge.put(self.kind.name, edge, notify=False)
        except ValueError as exc:  # the spec cannot be expressed in EdgeX's terms
            await self._status(obj, {"synced": False}, False, "InvalidSpec", str(exc))
            raise TerminalError(f"{self.kind.name} {obj['metadata']['name']}: {exc}") from exc
        done = await self.kind.after_push(obj, edge)
        fields = {"synced": True, **self.kind.status_from_edge(edge)}
        if done.actual is not None:
            fields["deviceProperties"] = done.actual
        await self._status(obj, fields, True, "Synced", "", managed=True, problems=done.problems)
        if done.problems:
            return self._later(name)
        self._retries.pop(name, None)
        return None

    async def _add(self, obj: Obj, name: str) -> EdgeObject:
        try:
            edge = await self.kind.add(self.metadata, obj)
        except Conflict:  # it exists already under that name: adopt it
            edge = await self.kind.get(self.metadata, name)
        self.edge.put(self.kind.name, edge, notify=False)
        self._related(self.kind.name, name, None)
        return edge

    async def _mirror(self, obj: Obj, edge: EdgeObject | None) -> Result | None:
        """Edge-owned: the CR follows EdgeX, and goes when EdgeX's object went."""
        if edge is None:
            if (obj.get("status") or {}).get("synced"):
                await self._delete_cr(obj)
                return None
            await self._status(obj, {"synced": False}, False, "NotFoundOnEdge", "not in EdgeX", managed=False)
            return None
        obj = await ensure_finalizer(self.resource, obj, self.kind.finalizer)
        spec = self.kind.spec_from_edge(edge, self.scope.pool, self.scope.namespace)
        drift = self.kind.drift(obj.get("spec") or {}, spec, self.kind.mirrored)
        if drift:
            meta = obj["metadata"]
            patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {f: spec.get(f) for f in drift}}
            obj = await self.resource.patch(meta["name"], patch)
        await self._status(obj, {"synced": True, **self.kind.status_from_edge(edge)}, True, "Synced", "", managed=False)
        return None

    # -- CR lifecycle ---------------------------------------------------------------------------------

    async def _create_cr(self, edge: EdgeObject) -> None:
        """A CR for an object found only in EdgeX (its status follows on the next reconcile)."""
        try:
            body = self.kind.from_edgex(edge, self.scope.pool, self.scope.namespace).to_dict()
        except ValueError as exc:
            logger.warning("%s %s in EdgeX cannot become a CR: %s", self.kind.name, edge.name, exc)
            return
        body.pop("status", None)
        body["metadata"]["finalizers"] = [self.kind.finalizer]
        try:
            await self.resource.create(body)
        except AlreadyExists:  # our own create, not in the cache yet; or a CR of that name maps elsewhere
            logger.debug("%s %s exists already", self.kind.name, body["metadata"]["name"])
        except Invalid as exc:  # e.g. an EdgeX name that makes no valid object name: retrying will not help
            raise TerminalError(f"{self.kind.name} {edge.name} in EdgeX cannot become a CR: {exc}") from exc

    async def _delete_cr(self, obj: Obj) -> None:
        try:
            obj = await remove_finalizer(self.resource, obj, self.kind.finalizer)
            await self.resource.delete(obj["metadata"]["name"], uid=obj["metadata"].get("uid"))
        except KubeNotFound:
            pass

    async def _finalize(self, obj: Obj, name: str) -> Result | None:
        """The CR is being deleted: its EdgeX object goes first, then our finalizer."""
        if self.kind.finalizer not in (obj["metadata"].get("finalizers") or []):
            return None
        if not self.edge.reachable:
            return None  # the next listing that succeeds enqueues it again
        try:
            await self.kind.delete(self.metadata, name)
        except NotFound:
            pass
        except Unavailable as exc:
            self.edge.mark_unreachable(exc)
            return None
        except Conflict as exc:  # still used by a device in EdgeX: try again once that is gone
            logger.info("%s %s cannot be deleted from EdgeX yet: %s", self.kind.name, name, exc)
            return self._later(name)
        previous = self.edge.get(self.kind.name, name)
        self.edge.forget(self.kind.name, name, notify=False)
        self._related(self.kind.name, name, previous)
        self._retries.pop(name, None)
        with contextlib.suppress(KubeNotFound):
            await remove_finalizer(self.resource, obj, self.kind.finalizer)
        return None

    # -- status ----------------------------------------------------------------------------------------

    async def _status(
        self,
        obj: Obj,
        fields: dict[str, Any],
        ok: bool,
        reason: str,
        message: str,
        *,
        managed: bool | None = None,
        problems: list[str] | None = None,
    ) -> None:
        """Patch `fields` and the kind's conditions into the status, if that changes anything. `managed`: the
        Managing condition too (False for edge-owned objects, and for cloud-owned ones with `problems`)."""
        status = dict(fields)
        synced_type, managing_type = self.kind.synced_condition, self.kind.managing_condition
        if synced_type is not None:
            conditions = with_condition((obj.get("status") or {}).get("conditions"), synced_type, ok, reason, message)
            if managed is not None and managing_type is not None:
                if not managed:
                    why = (False, "NotManaged", f"{self.kind.name.lower()} is not managed by openyurt")
                elif problems:
                    why = (False, "PropertiesNotWritten", "; ".join(problems))
                else:
                    why = (True, "Managed", "")
                conditions = with_condition(conditions, managing_type, *why)
            status["conditions"] = conditions
        with contextlib.suppress(KubeNotFound):
            await patch_status_if_changed(self.resource, obj, status)

    def _later(self, name: str) -> Result:
        backoff = self._retries.setdefault(name, Backoff(initial=0.5, cap=RETRY_CAP_S))
        return Result(requeue_after=backoff.next_delay())

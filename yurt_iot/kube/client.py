"""Async access to any Kubernetes resource, by group/version/plural, with objects as JSON dicts.

Why not the official client: it is synchronous (urllib3), so every call would need a thread, and a watch
would pin one for its whole life. One `httpx.AsyncClient` instead keeps every request and every watch
stream on the process's single event loop, over a shared connection pool. Its configuration still comes
from the official loaders (see `yurt_iot.kube.config`).

    async with KubeClient.from_kubeconfig() as kube:
        devices = kube.resource(Device, namespace="default")
        device = await devices.get("sensor-1")
        await devices.patch_status("sensor-1", {"status": {"synced": True}})
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

import httpx

from yurt_iot.api.meta import Resource, ResourceType
from yurt_iot.kube import errors
from yurt_iot.kube.config import ConfigurationAuth, load_config, ssl_context
from yurt_iot.kube.objects import Obj

__all__ = ["KubeClient", "ObjectList", "PatchType", "ResourceClient", "WatchEvent"]

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic", "apply"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
#: Extra read time beyond a watch's timeoutSeconds before a silent stream counts as dead.
_WATCH_READ_MARGIN = 30.0


class WatchEvent(NamedTuple):
    """One event of a watch stream: type is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: Obj


@dataclass(frozen=True)
class ObjectList:
    """Every object of a list (all pages) and the resourceVersion to watch from to see what follows."""

    items: list[Obj]
    resource_version: str


class KubeClient:
    """One connection pool to one API server; `resource()` gives the per-type operations."""

    def __init__(self, configuration: Any, *, timeout: float = 30.0) -> None:
        """`configuration` is a `kubernetes.client.Configuration` (see `load_config`); `timeout` bounds each request."""
        self.timeout = timeout
        self._sni = configuration.tls_server_name
        # trust_env=False: HTTP(S)_PROXY of the environment must not capture cluster traffic; the kubeconfig's
        # own proxy-url is honoured explicitly.
        self._http = httpx.AsyncClient(
            base_url=configuration.host,
            verify=ssl_context(configuration),
            auth=ConfigurationAuth(configuration),
            proxy=configuration.proxy or None,
            trust_env=False,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "yurt-iot"},
        )

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | Path | None = None, *, context: str | None = None) -> Self:
        """A client for the kubeconfig (or the in-cluster service account; see `load_config`)."""
        return cls(load_config(kubeconfig, context=context))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def resource(self, kind: ResourceType | type[Resource], namespace: str | None = None) -> ResourceClient:
        """Operations on one resource type, e.g. `resource(Device)` or `resource(LEASES, "kube-system")`.

        `namespace` is the default for calls that name none; list and watch without one see all namespaces.
        """
        rt = kind if isinstance(kind, ResourceType) else kind.resource_type
        return ResourceClient(self, rt, namespace)

    def _extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self._sni} if self._sni else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call; returns the decoded JSON answer or raises an `ApiError` / `Unreachable`."""
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            response = await self._http.request(
                method, path, params=_clean(params), content=content, headers=headers, extensions=self._extensions()
            )
        except httpx.TransportError as exc:
            raise errors.Unreachable(f"{method} {path}: {exc!r}") from exc
        if response.is_error:
            raise errors.from_body(response.status_code, response.content)
        try:
            return response.json()
        except ValueError as exc:
            raise errors.Unreachable(f"{method} {path}: answer is not JSON: {response.text[:200]!r}") from exc

    async def stream(
        self, path: str, params: Mapping[str, Any], read_timeout: float | None
    ) -> AsyncGenerator[Obj, None]:
        """GET a streaming endpoint and yield each line as JSON; errors as in `request`."""
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        try:
            async with self._http.stream(
                "GET", path, params=_clean(params), timeout=timeout, extensions=self._extensions()
            ) as response:
                if response.is_error:
                    raise errors.from_body(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise errors.Unreachable(f"watch {path}: {exc!r}") from exc
        except ValueError as exc:
            raise errors.Unreachable(f"watch {path}: malformed event: {exc}") from exc


def _clean(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query parameters without the unset ones, booleans spelled as the API server expects."""
    if params is None:
        return None
    return {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items() if v is not None}


class ResourceClient:
    """get/list/create/replace/patch/delete/watch of one resource type (namespaced or cluster-scoped)."""

    def __init__(self, client: KubeClient, resource_type: ResourceType, namespace: str | None = None) -> None:
        self.client, self.resource_type, self.namespace = client, resource_type, namespace

    @property
    def namespaced(self) -> bool:
        return self.resource_type.scope == "Namespaced"

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace and self.namespaced else ""
        rt = self.resource_type
        return f"<ResourceClient {rt.plural}.{rt.group or 'core'}/{rt.version}{where}>"

    # ------------------------------------------------------------------ paths

    def _ns(self, namespace: str | None, obj: Mapping[str, Any] | None = None, *, required: bool = True) -> str | None:
        if not self.namespaced:
            return None
        ns = namespace or ((obj or {}).get("metadata") or {}).get("namespace") or self.namespace
        if required and not ns:
            raise ValueError(f"namespace: required for namespaced resource {self.resource_type.plural}")
        return str(ns) if ns else None

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection, an object or its subresource."""
        rt = self.resource_type
        root = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
        parts = [root]
        if namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.resource_type.plural)
        if name is not None:
            if not name:
                raise ValueError(f"metadata.name: required for {self.resource_type.kind}")
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    @staticmethod
    def _body(obj: Obj | Resource) -> Obj:
        return obj.to_dict() if isinstance(obj, Resource) else obj

    # ------------------------------------------------------------------ operations

    async def get(self, name: str, *, namespace: str | None = None) -> Obj:
        return await self.client.request("GET", self.path(self._ns(namespace), name))  # type: ignore[no-any-return]

    async def list(
        self,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """Every matching object, fetched `page_size` at a time (limit/continue) so huge lists stay cheap.

        The pages form one consistent snapshot; if it expires midway the server answers `Gone`.
        """
        items: list[Obj] = []
        params: dict[str, Any] = {
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": page_size or None,
        }  # fmt: skip
        path = self.path(self._ns(namespace, required=False))
        while True:
            page = await self.client.request("GET", path, params=params)
            kind = self.resource_type.kind
            for item in page.get("items") or []:
                # Items of a list carry no apiVersion/kind; fill them in so every cached object is self-describing.
                item.setdefault("apiVersion", self.resource_type.api_version.lstrip("/"))
                item.setdefault("kind", kind)
                items.append(item)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return ObjectList(items, str(meta.get("resourceVersion") or ""))
            params["continue"] = meta["continue"]

    async def create(self, obj: Obj | Resource, *, namespace: str | None = None) -> Obj:
        body = self._body(obj)
        return await self.client.request("POST", self.path(self._ns(namespace, body)), body=body)  # type: ignore[no-any-return]

    async def replace(self, obj: Obj | Resource, *, subresource: str | None = None) -> Obj:
        """PUT the whole object; with metadata.resourceVersion set, a concurrent change fails with `Conflict`."""
        body = self._body(obj)
        name = str((body.get("metadata") or {}).get("name") or "")
        path = self.path(self._ns(None, body), name, subresource)
        return await self.client.request("PUT", path, body=body)  # type: ignore[no-any-return]

    async def patch(
        self,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> Obj:
        """PATCH an object. A merge patch carrying metadata.resourceVersion is applied only to that version."""
        params = {"fieldManager": field_manager, "force": force}
        path = self.path(self._ns(namespace), name, subresource)
        return await self.client.request(  # type: ignore[no-any-return]
            "PATCH", path, params=params, body=patch, content_type=_PATCH_CONTENT_TYPES[patch_type]
        )

    async def patch_status(self, name: str, patch: Any, *, namespace: str | None = None) -> Obj:
        """Merge-patch the status subresource: `patch` is `{"status": {...}}`; spec changes in it are ignored."""
        return await self.patch(name, patch, namespace=namespace, subresource="status")

    async def delete(
        self,
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        uid: str | None = None,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
    ) -> Obj:
        """Delete (or, with finalizers pending, mark for deletion); preconditions guard against deleting a
        newer or re-created object. Returns what the server answers: the object or a Status."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        return await self.client.request("DELETE", self.path(self._ns(namespace), name), body=body)  # type: ignore[no-any-return]

    async def watch(
        self,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Stream changes after `resource_version` until the server ends the watch (after `timeout_seconds`).

        An ERROR event is raised as its `ApiError` (a `Gone` means: list again). Close the iterator when
        leaving early (`contextlib.aclosing`) so the connection is released at once.
        """
        params = {
            "watch": True, "resourceVersion": resource_version, "labelSelector": label_selector,
            "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": allow_bookmarks,
        }  # fmt: skip
        read_timeout = timeout_seconds + _WATCH_READ_MARGIN if timeout_seconds is not None else None
        path = self.path(self._ns(namespace, required=False))
        async for line in self.client.stream(path, params, read_timeout):
            kind, obj = line.get("type"), line.get("object")
            if not isinstance(kind, str) or not isinstance(obj, dict):
                raise errors.Unreachable(f"watch {path}: malformed event {str(line)[:200]}")
            if kind == "ERROR":
                raise errors.from_status(int(obj.get("code") or 500), obj)
            yield WatchEvent(kind, obj)

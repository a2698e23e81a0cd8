"""Which IoT objects one device controller instance owns: those of its NodePool in its namespace.

As in OpenYurt's yurt-iot-dock, one controller serves one NodePool (named by a flag, or found from the
`apps.openyurt.io/nodepool` label of the node it runs on: named by NODE_NAME, or the node of its own pod, as
OpenYurt finds it) in one namespace, and touches only the Device,
DeviceService and DeviceProfile CRs whose `spec.nodePool` is that pool. The EdgeX backend and the native
backend share this scope, so the two can never fight over an object.

    scope = PoolScope(await discover_pool(kube, node_name), "iot")
    informer = Informer(kube.resource(Device, scope.namespace), indexers=scope.indexers)
    mine = informer.store.by_index(POOL_INDEX, scope.pool)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yurt_iot.api.apps import NODEPOOL_LABEL
from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL, Device, DeviceProfile, DeviceService
from yurt_iot.api.meta import ResourceType
from yurt_iot.kube import IndexFunc, KubeClient, NotFound, by_field, field_value

__all__ = [
    "EDGEX_OBJECT_NAME_LABEL",
    "FINALIZERS",
    "IOT_KINDS",
    "NODEPOOL_LABEL",
    "NODES",
    "POOL_INDEX",
    "PoolNotFound",
    "PoolScope",
    "discover_pool",
    "discover_pool_of_pod",
    "own_pod",
    "served_pool",
]

NODES = ResourceType("", "v1", "Node", "nodes", scope="Cluster")
"""Core v1 Nodes (cluster-scoped), read to find the pool a controller runs in."""

PODS = ResourceType("", "v1", "Pod", "pods")
"""Core v1 Pods: a controller started without a pool or node name reads its own to find its node."""

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

IOT_KINDS: tuple[type[Device] | type[DeviceService] | type[DeviceProfile], ...] = (
    DeviceService,
    DeviceProfile,
    Device,
)
"""The kinds a pool's device controller syncs, in the order the edge needs them created."""

FINALIZERS: Mapping[str, str] = {kind.resource_type.kind: kind.resource_type.finalizer or "" for kind in IOT_KINDS}
"""OpenYurt's finalizer per kind (`iot.openyurt.io/device`, ...): the controller removes the edge object first."""

POOL_INDEX = "spec.nodePool"
"""Name of the informer index of objects by pool (see `PoolScope.indexers`)."""

_by_pool: IndexFunc = by_field("spec.nodePool")


class PoolNotFound(LookupError):
    """The controller's pool could not be determined (no such node, or the node has no pool label)."""


@dataclass(frozen=True)
class PoolScope:
    """One NodePool in one namespace: what a controller instance may touch."""

    pool: str
    namespace: str

    def __post_init__(self) -> None:
        if not self.pool:
            raise ValueError("pool: must not be empty (the NodePool this controller serves)")
        if not self.namespace:
            raise ValueError("namespace: must not be empty (the namespace of the pool's IoT objects)")

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """True for an object of this pool and namespace (`spec.nodePool` equal to the pool)."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        return field_value(obj, "spec.nodePool") == self.pool and namespace in (None, self.namespace)

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        """Informer indexers: objects by `spec.nodePool`, looked up with `store.by_index(POOL_INDEX, pool)`."""
        return {POOL_INDEX: _by_pool}


async def discover_pool(client: KubeClient, node_name: str) -> str:
    """The NodePool of node `node_name`, from its `apps.openyurt.io/nodepool` label (as OpenYurt finds it).

    Raises PoolNotFound naming the node and the label when the node does not exist or has no pool.
    """
    if not node_name:
        raise PoolNotFound("node name: empty; pass the pool explicitly or set the node name (NODE_NAME)")
    try:
        node = await client.resource(NODES).get(node_name)
    except NotFound:
        raise PoolNotFound(f"node {node_name!r} does not exist, so its pool cannot be read") from None
    pool = ((node.get("metadata") or {}).get("labels") or {}).get(NODEPOOL_LABEL)
    if not pool:
        raise PoolNotFound(f"node {node_name!r} has no {NODEPOOL_LABEL} label: it belongs to no NodePool")
    return str(pool)


async def discover_pool_of_pod(client: KubeClient, pod_name: str, namespace: str) -> str:
    """The NodePool of the node that pod `namespace/pod_name` runs on: how OpenYurt's yurt-iot-dock finds its
    pool when neither the pool nor the node is given (its own pod; see `own_pod`).

    Raises PoolNotFound naming the pod when it does not exist or is not scheduled, or as `discover_pool`.
    """
    try:
        pod = await client.resource(PODS, namespace).get(pod_name)
    except NotFound:
        raise PoolNotFound(f"pod {namespace}/{pod_name} does not exist, so its node cannot be read") from None
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise PoolNotFound(f"pod {namespace}/{pod_name} is not scheduled to a node yet")
    return await discover_pool(client, str(node))


def own_pod(namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> tuple[str, str] | None:
    """(name, namespace) of the pod this process runs in, None outside one: its hostname (a pod's name unless
    the pod sets another) and its service account's namespace file."""
    try:
        namespace = namespace_file.read_text().strip()
    except OSError:
        return None
    name = os.environ.get("HOSTNAME") or socket.gethostname()
    return (name, namespace) if name and namespace else None


async def served_pool(
    client: KubeClient, pool: str | None, node: str | None, pod: tuple[str, str] | None = None
) -> str:
    """The pool a controller serves: `pool` if named, else that of `node`, else that of the node of `pod`
    (name, namespace; see `own_pod`). PoolNotFound when none is given or the lookup fails."""
    if pool:
        return pool
    if node or pod is None:
        return await discover_pool(client, node or "")
    return await discover_pool_of_pod(client, *pod)

"""`apps.openyurt.io`: NodePool (v1beta2 stored, v1beta1 served), YurtAppSet v1beta1, YurtAppDaemon v1alpha1.

Rules that OpenYurt enforces in its admission webhooks are CEL rules (`x-kubernetes-validations`) and
schema defaults here, so the API server itself refuses a bad object and no webhook has to be running.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, JsonValue
from pydantic.config import JsonDict

from yurt_iot.api.meta import (
    ApiModel,
    Condition,
    LabelSelector,
    PrinterColumn,
    Resource,
    ResourceType,
    age_column,
)

GROUP = "apps.openyurt.io"

#: Node label that makes a node a member of a pool.
NODEPOOL_LABEL = "apps.openyurt.io/nodepool"
#: NodePool label holding the lower-cased pool type.
NODEPOOL_TYPE_LABEL = "nodepool.openyurt.io/type"

_INT32: JsonDict = {"format": "int32"}


def _immutable(field: str) -> JsonDict:
    """A transition rule: an optional boolean field keeps its value (absent counts as false)."""
    return {
        "rule": f"(has(self.{field}) && self.{field}) == (has(oldSelf.{field}) && oldSelf.{field})",
        "message": f"{field} is immutable",
        "fieldPath": f".{field}",
    }


_NODEPOOL_RULES: list[JsonValue] = [
    {
        "rule": "!(self.type == 'Cloud' && has(self.hostNetwork) && self.hostNetwork)",
        "message": "hostNetwork may not be set for a Cloud pool",
        "fieldPath": ".hostNetwork",
    },
    _immutable("hostNetwork"),
]

PoolType = Literal["Edge", "Cloud"]


class Taint(ApiModel):
    """A taint the pool puts on its nodes."""

    key: str = Field(min_length=1)
    """The taint key to be applied to a node."""
    value: str | None = None
    """The taint value corresponding to the taint key."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    """The effect of the taint on pods that do not tolerate it."""
    time_added: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the taint was added; only written for NoExecute taints."""


class NodePoolSpecV1beta1(ApiModel):
    """NodePoolSpec (v1beta1) defines the desired state of NodePool."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _NODEPOOL_RULES})

    type: PoolType = Field(
        default="Edge",
        json_schema_extra={"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "type is immutable"}]},
    )
    """The type of the pool: Edge or Cloud. Immutable."""
    host_network: bool | None = None
    """Pods on this pool's nodes use the host network (no CNI is installed). Immutable; not for Cloud pools."""
    labels: dict[str, str] | None = None
    """Labels added to every node of the pool."""
    annotations: dict[str, str] | None = None
    """Annotations added to every node of the pool."""
    taints: list[Taint] | None = None
    """Taints added to every node of the pool."""


class NodePoolStatusV1beta1(ApiModel):
    """NodePoolStatus (v1beta1) defines the observed state of NodePool."""

    ready_node_num: int | None = Field(default=None, json_schema_extra=_INT32)
    """Number of ready nodes in the pool."""
    unready_node_num: int | None = Field(default=None, json_schema_extra=_INT32)
    """Number of not-ready nodes in the pool."""
    nodes: list[str] | None = None
    """Names of the nodes in the pool, sorted."""


class PoolScopeMetadata(ApiModel):
    """A resource shared by the nodes of a pool through the pool's leader hub."""

    group: str
    """API group; empty for the core group."""
    version: str
    """API version."""
    resource: str
    """Resource (plural) name."""


class LeaderEndpoint(ApiModel):
    """The address of a leader hub of the pool."""

    node_name: str
    """Node running the leader hub."""
    address: str
    """Address of the leader hub."""


class NodePoolSpec(NodePoolSpecV1beta1):
    """NodePoolSpec (v1beta2) defines the desired state of NodePool."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [*_NODEPOOL_RULES, _immutable("interConnectivity")]}
    )

    inter_connectivity: bool | None = None
    """All nodes of the pool reach each other (layer 2 or 3), so pool-level list/watch reuse applies. Immutable."""
    leader_election_strategy: Literal["random", "mark"] = "random"
    """How the leader hub is elected: random, or mark (among nodes matching leaderNodeLabelSelector)."""
    leader_node_label_selector: dict[str, str] | None = None
    """Labels of the nodes eligible as leader with the mark strategy."""
    enable_leader_election: bool | None = None
    """Elect leader hubs in this pool."""
    pool_scope_metadata: list[PoolScopeMetadata] | None = None
    """Resources shared in the pool through the leader hub."""
    leader_replicas: int = Field(default=1, ge=1, json_schema_extra=_INT32)
    """Number of leader hubs."""


class NodePoolStatus(NodePoolStatusV1beta1):
    """NodePoolStatus (v1beta2) defines the observed state of NodePool."""

    leader_endpoints: list[LeaderEndpoint] | None = None
    """Addresses of the leader hubs."""
    leader_num: int | None = Field(default=None, json_schema_extra=_INT32)
    """Number of leader hubs."""
    leader_last_elected_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the leaders were last elected."""
    conditions: list[Condition] | None = None
    """Latest observations of the pool's state, e.g. LeaderReady."""


_NODEPOOL_COLUMNS = (
    PrinterColumn("Type", ".spec.type", description="The type of nodepool"),
    PrinterColumn("ReadyNodes", ".status.readyNodeNum", "integer", "The number of ready nodes in the pool"),
    PrinterColumn("NotReadyNodes", ".status.unreadyNodeNum", "integer", "The number of unready nodes in the pool"),
)


class NodePool(Resource):
    """NodePool is a group of nodes at one site, managed as a unit (v1beta2, the stored version)."""

    resource_type = ResourceType(
        GROUP, "v1beta2", "NodePool", "nodepools", scope="Cluster",
        short_names=("np",), categories=("yurt",),
        printer_columns=(
            *_NODEPOOL_COLUMNS,
            PrinterColumn("LeaderNodes", ".status.leaderNum", "integer", "The number of leader nodes in the pool"),
            PrinterColumn("LeaderElectionAge", ".status.leaderLastElectedTime", "date",
                          "The time the leaders were last elected"),
            age_column("Age"),
        ),
    )  # fmt: skip

    spec: NodePoolSpec = Field(default_factory=NodePoolSpec, json_schema_extra={"default": {}})
    status: NodePoolStatus | None = None


class NodePoolV1beta1(Resource):
    """NodePool as served at v1beta1 (a subset of v1beta2; kept readable for older clients)."""

    resource_type = ResourceType(
        GROUP, "v1beta1", "NodePool", "nodepools", scope="Cluster",
        short_names=("np",), categories=("yurt",),
        printer_columns=(*_NODEPOOL_COLUMNS, age_column("Age")), storage=False,
    )  # fmt: skip

    spec: NodePoolSpecV1beta1 = Field(default_factory=NodePoolSpecV1beta1, json_schema_extra={"default": {}})
    status: NodePoolStatusV1beta1 | None = None


# --- Workload templates (shared by YurtAppSet and YurtAppDaemon) -------------------------------------

_SCHEMALESS: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}


class WorkloadTemplateBody(ApiModel):
    """A Deployment or StatefulSet template: metadata and spec as the workload kind defines them."""

    metadata: dict[str, Any] | None = Field(default=None, json_schema_extra=_SCHEMALESS)
    """Metadata of the generated workloads."""
    spec: dict[str, Any] = Field(json_schema_extra=_SCHEMALESS)
    """Spec of the generated workloads (a DeploymentSpec or StatefulSetSpec)."""


class WorkloadTemplate(ApiModel):
    """The workload to create in each pool: exactly one of the templates."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.deploymentTemplate) != has(self.statefulSetTemplate)",
                    "message": "exactly one of deploymentTemplate or statefulSetTemplate must be set",
                },
                {
                    "rule": "has(self.deploymentTemplate) == has(oldSelf.deploymentTemplate)",
                    "message": "the workload template kind cannot be changed",
                },
            ]
        }
    )

    deployment_template: WorkloadTemplateBody | None = None
    """Create a Deployment in each pool."""
    stateful_set_template: WorkloadTemplateBody | None = None
    """Create a StatefulSet in each pool."""


# --- YurtAppSet ---------------------------------------------------------------------------------------


class ContainerImage(ApiModel):
    """Replace the image of one container (or init container)."""

    name: str = Field(min_length=1)
    """Name of the container."""
    target_image: str = Field(min_length=1)
    """The image to use."""


class Patch(ApiModel):
    """A JSON patch operation applied to the generated workload."""

    path: str = Field(min_length=1)
    """JSON pointer of the field, e.g. /spec/template/spec/hostNetwork."""
    operation: Literal["add", "remove", "replace"]
    """The operation: add, remove or replace."""
    value: Any = Field(default=None, json_schema_extra=_SCHEMALESS)
    """The value for add and replace."""


class Tweaks(ApiModel):
    """Per-pool changes to the workload template."""

    replicas: int | None = Field(default=None, ge=0, json_schema_extra=_INT32)
    """Replicas of the workload in the selected pools."""
    container_images: list[ContainerImage] | None = None
    """Images to replace."""
    patches: list[Patch] | None = None
    """JSON patches to apply."""


class WorkloadTweak(ApiModel):
    """Tweaks for the pools chosen by name or by label."""

    nodepool_selector: LabelSelector | None = None
    """Pools whose labels match."""
    pools: list[str] | None = None
    """Pools by name."""
    tweaks: Tweaks
    """The changes to make."""


class Workload(ApiModel):
    """The workload template and its per-pool tweaks."""

    workload_template: WorkloadTemplate
    """The workload created in each pool."""
    workload_tweaks: list[WorkloadTweak] | None = None
    """Per-pool changes to the template."""


class YurtAppSetSpec(ApiModel):
    """YurtAppSetSpec defines the desired state of YurtAppSet."""

    workload: Workload
    """The workload to run in each selected pool."""
    nodepool_selector: LabelSelector | None = None
    """Pools whose labels match get a workload."""
    pools: list[str] | None = None
    """Pools by name that get a workload."""
    revision_history_limit: int = Field(default=10, ge=0, json_schema_extra=_INT32)
    """Number of old revisions kept."""


class YurtAppSetStatus(ApiModel):
    """YurtAppSetStatus defines the observed state of YurtAppSet."""

    observed_generation: int | None = None
    """The generation the status describes."""
    collision_count: int | None = Field(default=None, json_schema_extra=_INT32)
    """Count of hash collisions of revisions."""
    current_revision: str
    """Name of the current revision."""
    ready_workloads: int = Field(json_schema_extra=_INT32)
    """Number of workloads whose pods are all ready."""
    updated_workloads: int | None = Field(default=None, json_schema_extra=_INT32)
    """Number of workloads at the current revision."""
    total_workloads: int = Field(json_schema_extra=_INT32)
    """Number of workloads."""
    conditions: list[Condition] | None = None
    """AppDispatched, AppDeleted, AppUpdated, AppReady, PoolFound."""


class YurtAppSet(Resource):
    """YurtAppSet runs one workload in many NodePools, with per-pool tweaks."""

    resource_type = ResourceType(
        GROUP, "v1beta1", "YurtAppSet", "yurtappsets",
        short_names=("yas",), categories=("yurt",),
        printer_columns=(
            PrinterColumn("TOTAL", ".status.totalWorkloads", "integer", "The total number of workloads"),
            PrinterColumn("READY", ".status.readyWorkloads", "integer", "The number of ready workloads"),
            PrinterColumn("UPDATED", ".status.updatedWorkloads", "integer", "The number of updated workloads"),
            age_column(),
        ),
    )  # fmt: skip

    spec: YurtAppSetSpec
    status: YurtAppSetStatus | None = None


# --- YurtAppDaemon (deprecated upstream) ----------------------------------------------------------------


class WorkloadSummary(ApiModel):
    """State of the workload of one pool."""

    app_name: str
    """Name of the workload."""
    replicas: int | None = Field(default=None, json_schema_extra=_INT32)
    """Desired replicas."""
    ready_replicas: int | None = Field(default=None, json_schema_extra=_INT32)
    """Ready replicas."""


class YurtAppDaemonSpec(ApiModel):
    """YurtAppDaemonSpec defines the desired state of YurtAppDaemon."""

    selector: LabelSelector
    """Label selector of the pods; must match the template's labels."""
    workload_template: WorkloadTemplate | None = None
    """The workload created in each matching pool."""
    nodepool_selector: LabelSelector
    """Pools whose labels match get a workload."""
    revision_history_limit: int | None = Field(default=None, ge=0, json_schema_extra=_INT32)
    """Number of old revisions kept."""


class YurtAppDaemonStatus(ApiModel):
    """YurtAppDaemonStatus defines the observed state of YurtAppDaemon."""

    observed_generation: int | None = None
    """The generation the status describes."""
    collision_count: int | None = Field(default=None, json_schema_extra=_INT32)
    """Count of hash collisions of revisions."""
    current_revision: str
    """Name of the current revision."""
    conditions: list[Condition] | None = None
    """WorkLoadProvisioned, WorkLoadUpdated, WorkLoadFailure."""
    overrider_ref: str | None = None
    """Name of the overrider applied (historic)."""
    workload_summary: list[WorkloadSummary] | None = None
    """State of each pool's workload."""
    template_type: str | None = None
    """Deployment or StatefulSet."""
    nodepools: list[str] | None = None
    """Pools that have a workload."""


class YurtAppDaemon(Resource):
    """YurtAppDaemon runs one workload in every NodePool that matches a selector. Deprecated: use YurtAppSet."""

    resource_type = ResourceType(
        GROUP, "v1alpha1", "YurtAppDaemon", "yurtappdaemons",
        short_names=("yad",), categories=("yurt",),
        printer_columns=(
            PrinterColumn("WorkloadTemplate", ".status.templateType", description="The workload template type"),
            age_column("AGE"),
        ),
        deprecation_warning="apps.openyurt.io/v1alpha1 YurtAppDaemon is deprecated; use YurtAppSet v1beta1",
    )  # fmt: skip

    spec: YurtAppDaemonSpec
    status: YurtAppDaemonStatus | None = None

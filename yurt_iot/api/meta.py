"""Shared Kubernetes meta types and the base class of every custom resource model.

The models in `yurt_iot.api` are the single source of truth for our CRDs: the same classes validate
manifests in Python, generate `crds/*.yaml` (see `yurt_iot.api.crd`) and carry objects through the
controllers. Field names are snake_case in Python and camelCase on the wire, as Kubernetes writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

Scope = Literal["Namespaced", "Cluster"]


class ApiModel(BaseModel):
    """Base of every API struct: camelCase on the wire, attribute docstrings become schema descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(ApiModel):
    """Standard object metadata; fields the server owns are kept so that objects read back round-trip."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    owner_references: list[dict[str, Any]] | None = None
    managed_fields: list[dict[str, Any]] | None = None


class Condition(ApiModel):
    """One observation of an object's state, in the shape OpenYurt uses for its conditions."""

    type: str | None = None
    """Type of the condition."""
    status: str | None = None
    """Status of the condition, one of True, False, Unknown."""
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """Last time the condition transitioned from one status to another."""
    reason: str | None = None
    """The reason for the condition's last transition."""
    message: str | None = None
    """A human readable message indicating details about the transition."""


class LabelSelectorRequirement(ApiModel):
    """A selector requirement: a key, an operator and the values it relates them to."""

    key: str
    """The label key that the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[str] | None = None
    """Values for In and NotIn; must be empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """A label query over a set of resources; the result of matchLabels and matchExpressions is ANDed."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: dict[str, str] | None = None
    """Equality-based requirements, one {key: value} pair each."""
    match_expressions: list[LabelSelectorRequirement] | None = None
    """Set-based requirements."""


@dataclass(frozen=True)
class PrinterColumn:
    """A column of `kubectl get` output."""

    name: str
    json_path: str
    type: str = "string"
    description: str | None = None
    priority: int = 0


def age_column(name: str = "AGE") -> PrinterColumn:
    return PrinterColumn(name=name, json_path=".metadata.creationTimestamp", type="date")


@dataclass(frozen=True)
class ResourceType:
    """Where a resource model lives in the API: one version of one CRD."""

    group: str
    version: str
    kind: str
    plural: str
    scope: Scope = "Namespaced"
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    storage: bool = True
    deprecation_warning: str | None = None
    finalizer: str | None = None
    extra_validations: tuple[dict[str, str], ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


class Resource(ApiModel):
    """A top-level API object. Subclasses set `resource_type`; apiVersion and kind follow from it."""

    resource_type: ClassVar[ResourceType]

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="before")
    @classmethod
    def _type_meta(cls, data: Any) -> Any:
        """Fill in apiVersion and kind, and refuse an object of another type."""
        if not isinstance(data, dict):
            return data
        rt = cls.resource_type
        data = dict(data)
        api_version = data.setdefault("apiVersion", data.pop("api_version", rt.api_version))
        kind = data.setdefault("kind", rt.kind)
        if api_version != rt.api_version or kind != rt.kind:
            raise ValueError(f"expected apiVersion {rt.api_version} kind {rt.kind}, got {api_version} {kind}")
        return data


def describe(error: ValidationError) -> str:
    """A pydantic error as the API server words its own: one `field.path: problem` per line."""
    lines = []
    for item in error.errors(include_url=False):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]).lstrip(".")
        lines.append(f"{path or '<root>'}: {item['msg']}")
    return "\n".join(lines)

"""The CRDs generated from the models, as a real API server applies them."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.kube_helpers import apply, kubectl, new_namespace
from yurt_iot.api import RESOURCE_MODELS, crd_files, parse_resource
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent


def test_crds_directory_matches_the_models() -> None:
    """`crds/` is generated from the models; a model edit without `yurt-iot crds` fails here."""
    wanted = crd_files()
    present = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert sorted(present) == sorted(wanted), "run `yurt-iot crds` to regenerate crds/"
    for name, text in wanted.items():
        assert present[name] == text, f"crds/{name} is stale: run `yurt-iot crds`"


def test_every_crd_is_established_with_openyurt_names(control_plane: ControlPlane) -> None:
    result = kubectl(control_plane, "get", "crd", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    crds = {item["metadata"]["name"]: item for item in yaml.safe_load(result.stdout)["items"]}
    expected = {
        "devices.iot.openyurt.io": ("v1alpha1", ["dev"]),
        "deviceservices.iot.openyurt.io": ("v1alpha1", ["dsvc"]),
        "deviceprofiles.iot.openyurt.io": ("v1alpha1", ["dp"]),
        "nodepools.apps.openyurt.io": ("v1beta2", ["np"]),
        "yurtappsets.apps.openyurt.io": ("v1beta1", ["yas"]),
        "yurtappdaemons.apps.openyurt.io": ("v1alpha1", ["yad"]),
    }
    for name, (stored, short_names) in expected.items():
        crd = crds[name]
        established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
        assert established and established[0]["status"] == "True", name
        assert crd["status"]["storedVersions"] == [stored]
        assert crd["spec"]["names"]["shortNames"] == short_names
    served = [v["name"] for v in crds["nodepools.apps.openyurt.io"]["spec"]["versions"] if v["served"]]
    assert served == ["v1beta2", "v1beta1"]


def test_kubectl_explain_documents_the_fields(control_plane: ControlPlane) -> None:
    # The API server publishes a new CRD's OpenAPI a moment after the CRD is Established.
    result = wait_for(
        lambda: (r := kubectl(control_plane, "explain", "device.spec.deviceProperties")).returncode == 0 and r,
        timeout=30,
        interval=0.2,
        what="kubectl explain device",
    )
    assert "Desired values of device properties" in result.stdout
    assert "desiredValue" in result.stdout and "<string> -required-" in result.stdout
    result = kubectl(control_plane, "explain", "nodepool.spec.type", "--api-version=apps.openyurt.io/v1beta2")
    assert result.returncode == 0, result.stderr
    assert "Edge or Cloud" in result.stdout


# --- invalid manifests ------------------------------------------------------------------------------

DEVICE: dict[str, Any] = {
    "apiVersion": "iot.openyurt.io/v1alpha1",
    "kind": "Device",
    "metadata": {"name": "bad-device"},
    "spec": {"serviceName": "svc", "profileName": "prof", "notify": True, "nodePool": "pool-a"},
}
SERVICE: dict[str, Any] = {
    "apiVersion": "iot.openyurt.io/v1alpha1",
    "kind": "DeviceService",
    "metadata": {"name": "bad-service"},
    "spec": {"baseAddress": "http://svc:59901"},
}
PROFILE: dict[str, Any] = {
    "apiVersion": "iot.openyurt.io/v1alpha1",
    "kind": "DeviceProfile",
    "metadata": {"name": "bad-profile"},
    "spec": {
        "deviceResources": [
            {
                "name": "Temperature",
                "description": "t",
                "isHidden": False,
                "properties": {"valueType": "Int16", "readWrite": "R"},
            }
        ]
    },
}
APPSET: dict[str, Any] = yaml.safe_load((REPO / "examples/apps/yurtappset.yaml").read_text())
APPDAEMON: dict[str, Any] = yaml.safe_load((REPO / "examples/apps/yurtappdaemon.yaml").read_text())


def nodepool(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool", "metadata": {}, "spec": spec}


def edit(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` set to `value` (or removed when value is ...)."""
    doc = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return doc


_TWO_TEMPLATES = edit(APPSET, "spec.workload.workloadTemplate.statefulSetTemplate", {"spec": {"serviceName": "x"}})
_STATEFUL_APPSET = edit(
    edit(APPSET, "spec.workload.workloadTemplate.deploymentTemplate", ...),
    "spec.workload.workloadTemplate.statefulSetTemplate",
    {"spec": {"serviceName": "x"}},
)

# (id, objects applied first that must be accepted, the invalid object, fragments the error must contain)
INVALID: list[tuple[str, list[dict[str, Any]], dict[str, Any], list[str]]] = [
    ("device-missing-serviceName", [], edit(DEVICE, "spec.serviceName", ...), ["spec.serviceName", "Required value"]),
    ("device-missing-notify", [], edit(DEVICE, "spec.notify", ...), ["spec.notify", "Required value"]),
    ("device-notify-not-bool", [], edit(DEVICE, "spec.notify", "yes"), ["spec.notify", "must be of type boolean"]),
    ("device-bad-adminState", [], edit(DEVICE, "spec.adminState", "OPEN"), ["spec.adminState", "Unsupported value"]),
    (
        "device-property-without-desiredValue",
        [],
        edit(DEVICE, "spec.deviceProperties", {"SetPoint": {"name": "SetPoint"}}),
        ["spec.deviceProperties.SetPoint.desiredValue", "Required value"],
    ),
    (
        "device-bad-autoEvent-interval",
        [],
        edit(DEVICE, "spec.autoEvents", [{"sourceName": "Temperature", "interval": "fast"}]),
        ["spec.autoEvents[0].interval", "should match"],
    ),
    ("service-missing-baseAddress", [], edit(SERVICE, "spec.baseAddress", ...), ["spec.baseAddress", "Required value"]),
    (
        "profile-bad-valueType",
        [],
        edit(PROFILE, "spec.deviceResources.0.properties.valueType", "Int128"),
        ["spec.deviceResources[0].properties.valueType", "Unsupported value"],
    ),
    (
        "profile-scale-not-a-number",
        [],
        edit(PROFILE, "spec.deviceResources.0.properties.scale", "ten"),
        ["spec.deviceResources[0].properties.scale", "should match"],
    ),
    (
        "profile-minimum-above-maximum",
        [],
        edit(PROFILE, "spec.deviceResources.0.properties", {"valueType": "Int16", "minimum": "10", "maximum": "5"}),
        ["spec.deviceResources[0].properties.minimum", "minimum must not be greater than maximum"],
    ),
    (
        "profile-duplicate-resource",
        [],
        edit(PROFILE, "spec.deviceResources", PROFILE["spec"]["deviceResources"] * 2),
        ["spec.deviceResources[1]", "Duplicate value"],
    ),
    (
        "profile-command-without-operations",
        [],
        edit(
            PROFILE,
            "spec.deviceCommands",
            [{"name": "c", "isHidden": False, "readWrite": "R", "resourceOperations": []}],
        ),
        ["spec.deviceCommands[0].resourceOperations", "at least 1 items"],
    ),
    ("nodepool-bad-type", [], nodepool(type="Fog"), ["spec.type", "Unsupported value"]),
    (
        "nodepool-cloud-with-hostNetwork",
        [],
        nodepool(type="Cloud", hostNetwork=True),
        ["spec.hostNetwork", "hostNetwork may not be set for a Cloud pool"],
    ),
    ("nodepool-type-changed", [nodepool(type="Edge")], nodepool(type="Cloud"), ["spec.type", "type is immutable"]),
    (
        "nodepool-hostNetwork-changed",
        [nodepool(type="Edge")],
        nodepool(type="Edge", hostNetwork=True),
        ["spec.hostNetwork", "hostNetwork is immutable"],
    ),
    ("nodepool-zero-leaders", [], nodepool(leaderReplicas=0), ["spec.leaderReplicas", "greater than or equal to 1"]),
    (
        "nodepool-bad-taint-effect",
        [],
        nodepool(taints=[{"key": "k", "effect": "Sometimes"}]),
        ["spec.taints[0].effect", "Unsupported value"],
    ),
    (
        "yurtappset-two-templates",
        [],
        _TWO_TEMPLATES,
        ["spec.workload.workloadTemplate", "exactly one of deploymentTemplate or statefulSetTemplate"],
    ),
    (
        "yurtappset-template-kind-changed",
        [APPSET],
        _STATEFUL_APPSET,
        ["spec.workload.workloadTemplate", "the workload template kind cannot be changed"],
    ),
    (
        "yurtappset-bad-patch-operation",
        [],
        edit(APPSET, "spec.workload.workloadTweaks.0.tweaks.patches.0.operation", "move"),
        ["spec.workload.workloadTweaks[0].tweaks.patches[0].operation", "Unsupported value"],
    ),
    (
        "yurtappdaemon-missing-nodepoolSelector",
        [],
        edit(APPDAEMON, "spec.nodepoolSelector", ...),
        ["spec.nodepoolSelector", "Required value"],
    ),
]


@pytest.mark.parametrize(("first", "invalid", "fragments"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_refused_naming_the_field(
    control_plane: ControlPlane, first: list[dict[str, Any]], invalid: dict[str, Any], fragments: list[str]
) -> None:
    namespace = new_namespace(control_plane, "invalid")
    name = f"obj-{uuid.uuid4().hex[:8]}"  # NodePools are cluster-scoped: unique names keep cases apart
    for doc in [*first, invalid]:
        doc["metadata"] = {"name": name}
    for doc in first:
        accepted = apply(control_plane, doc, namespace)
        assert accepted.returncode == 0, accepted.stderr
    refused = apply(control_plane, invalid, namespace)
    assert refused.returncode != 0, f"accepted: {refused.stdout}"
    for fragment in fragments:
        assert fragment in refused.stderr


# --- round trip -------------------------------------------------------------------------------------

CONDITION = {
    "type": "DeviceSynced",
    "status": "True",
    "lastTransitionTime": "2026-11-26T15:00:00Z",
    "reason": "Synced",
    "message": "in sync with the edge",
}
STATUSES: dict[str, dict[str, Any]] = {
    "Device": {
        "lastConnected": 1795000000123,
        "lastReported": 1795000000456,
        "synced": True,
        "deviceProperties": {"SetPoint": {"name": "SetPoint", "getURL": "http://x/SetPoint", "actualValue": "21.5"}},
        "edgeId": "4d1c2a7e",
        "adminState": "UNLOCKED",
        "operatingState": "UP",
        "conditions": [CONDITION],
    },
    "DeviceService": {
        "synced": True,
        "edgeId": "e-1",
        "lastConnected": 1,
        "adminState": "LOCKED",
        "conditions": [CONDITION],
    },
    "DeviceProfile": {"id": "p-1", "synced": True},
    "NodePool": {
        "readyNodeNum": 2,
        "unreadyNodeNum": 1,
        "nodes": ["edge-1", "edge-2", "edge-3"],
        "leaderEndpoints": [{"nodeName": "edge-1", "address": "127.0.0.1:10267"}],
        "leaderNum": 1,
        "leaderLastElectedTime": "2026-11-26T15:00:00Z",
        "conditions": [{**CONDITION, "type": "LeaderReady"}],
    },
    "YurtAppSet": {
        "observedGeneration": 1,
        "currentRevision": "edge-web-5d8f",
        "readyWorkloads": 1,
        "updatedWorkloads": 1,
        "totalWorkloads": 1,
        "conditions": [{**CONDITION, "type": "AppReady"}],
    },
    "YurtAppDaemon": {
        "currentRevision": "edge-agent-1",
        "templateType": "StatefulSet",
        "nodepools": ["hangzhou"],
        "workloadSummary": [{"appName": "edge-agent-hangzhou-x", "replicas": 1, "readyReplicas": 1}],
    },
}


def _example_objects() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "examples").rglob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def custom_api(control_plane: ControlPlane) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(control_plane.kubeconfig)))


@pytest.mark.parametrize("kind", sorted(STATUSES))
def test_each_kind_round_trips_through_the_api_server(
    control_plane: ControlPlane, custom_api: client.CustomObjectsApi, kind: str
) -> None:
    """pydantic -> API server (spec, then status subresource) -> pydantic gives back the same object."""
    manifest = next(d for d in _example_objects() if d["kind"] == kind)
    sent = parse_resource({**manifest, "status": STATUSES[kind]})
    rt = type(sent).resource_type
    namespace = new_namespace(control_plane, "roundtrip")
    sent.metadata.name = f"rt-{uuid.uuid4().hex[:8]}"
    sent.metadata.labels = {"yurt-iot-dock/edgex-object.name": "thing"}
    sent.metadata.annotations = {"example.com/note": "round trip"}
    group, version = rt.group, rt.version
    body = sent.to_dict()
    if rt.scope == "Cluster":
        created = custom_api.create_cluster_custom_object(group, version, rt.plural, body)
        created["status"] = body["status"]
        custom_api.replace_cluster_custom_object_status(group, version, rt.plural, sent.metadata.name, created)
        stored = custom_api.get_cluster_custom_object(group, version, rt.plural, sent.metadata.name)
    else:
        created = custom_api.create_namespaced_custom_object(group, version, namespace, rt.plural, body)
        created["status"] = body["status"]
        custom_api.replace_namespaced_custom_object_status(
            group, version, namespace, rt.plural, sent.metadata.name, created
        )
        stored = custom_api.get_namespaced_custom_object(group, version, namespace, rt.plural, sent.metadata.name)
    received = parse_resource(stored)
    assert received.model_dump(exclude={"metadata"}) == sent.model_dump(exclude={"metadata"})
    for key in ("name", "labels", "annotations"):
        assert getattr(received.metadata, key) == getattr(sent.metadata, key)
    assert received.metadata.uid and received.metadata.resource_version


def test_every_model_has_a_round_trip_case() -> None:
    assert {m.resource_type.kind for m in RESOURCE_MODELS} == set(STATUSES)

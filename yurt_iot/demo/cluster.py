"""`yurt-iot demo --kube`: the demo's manifests applied to a cluster instead of run here.

Server-side apply with one field manager, so running it again updates the objects in place (and a user's own
edits to other fields are kept); the per-pool device controller then runs the devices on the pool's nodes.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from yurt_iot.demo.plan import DemoError
from yurt_iot.kube.client import KubeClient
from yurt_iot.kube.errors import KubeError
from yurt_iot.runtime.manifests import ManifestError, load_manifests

FIELD_MANAGER = "yurt-iot-demo"


async def apply_to_cluster(manifests: Path, kubeconfig: Path | None, namespace: str, console: Console) -> None:
    """Apply the Devices, DeviceProfiles and DeviceServices of `manifests` in `namespace`; DemoError if the
    files are invalid or the cluster refuses or cannot be reached."""
    try:
        objects = load_manifests([manifests])
    except ManifestError as error:
        raise DemoError(f"the manifests in {manifests} cannot be used:\n{error}") from None
    try:
        client = KubeClient.from_kubeconfig(kubeconfig)
    except Exception as error:  # the kubernetes package's loader raises its own exception types
        raise DemoError(f"no usable kubeconfig ({kubeconfig or 'default'}): {error}") from None
    async with client:
        for obj in objects:
            kind, name = obj.kind, obj.metadata.name or ""
            try:
                await client.resource(type(obj), namespace).patch(
                    name, obj.to_dict(), patch_type="apply", field_manager=FIELD_MANAGER, force=True
                )
            except KubeError as error:
                raise DemoError(f"{kind}/{name} not applied in namespace {namespace}: {error}") from None
            console.print(f"{kind.lower()}.iot.openyurt.io/{name} applied in namespace {namespace}")
    console.print(f"Watch them with: kubectl get devices,deviceprofiles,deviceservices -n {namespace}")

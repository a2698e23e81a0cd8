"""Shared bits of the kube tests: a client for the test control plane and a valid Device manifest."""

from __future__ import annotations

from typing import Any

from yurt_iot.kube import KubeClient
from yurt_iot.testing.controlplane import ControlPlane


def client_for(control_plane: ControlPlane) -> KubeClient:
    """A KubeClient configured from the control plane's kubeconfig, exactly as a deployed manager would be."""
    return KubeClient.from_kubeconfig(control_plane.kubeconfig)


def device(name: str, *, pool: str = "pool-a", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Device CR the CRD schema accepts."""
    return {
        "apiVersion": "iot.openyurt.io/v1alpha1",
        "kind": "Device",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"serviceName": "modbus", "profileName": "thermometer", "notify": True, "nodePool": pool},
    }

"""Which DeviceServices the native runtime implements, and the finalizer it keeps on their Devices.

A DeviceService CR names its implementation by its required `spec.baseAddress`, which for EdgeX is the URL of
the device service. A `native://` address says "no EdgeX service: the pool's own gateway drives these devices":

    spec:
      baseAddress: native://hangzhou   # conventionally the pool's name; only the scheme selects the backend
      nodePool: hangzhou

The field exists in OpenYurt's CRD and must be set anyway, so no schema change is needed, `kubectl get dsvc -o
wide` shows the choice, and an EdgeX backend that met such an address could not reach it over HTTP either: it
must skip these services (`is_native`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yurt_iot.kube import field_value

__all__ = ["FINALIZER", "NATIVE_SCHEME", "is_native"]

NATIVE_SCHEME = "native://"
"""Prefix of `spec.baseAddress` that selects the native backend."""

FINALIZER = "iot.openyurt.io/native-device"
"""Kept on every native Device so that its runtime stops before the CR goes. Its own name, not OpenYurt's
`iot.openyurt.io/device`, so that a device moved to an EdgeX service never has its finalizers confused."""


def is_native(service: Mapping[str, Any]) -> bool:
    """True for a DeviceService (JSON object) whose `spec.baseAddress` starts with `native://`."""
    address = field_value(service, "spec.baseAddress")
    return isinstance(address, str) and address.startswith(NATIVE_SCHEME)

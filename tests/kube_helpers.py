"""Small helpers for tests that talk to the real API server through the built kubectl."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import yaml

from yurt_iot.testing.controlplane import ControlPlane


def kubectl(cp: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the control plane; never raises on a non-zero exit."""
    return cp.kubectl(*args, input=stdin)


def apply(
    cp: ControlPlane, docs: list[dict[str, Any]] | dict[str, Any], namespace: str
) -> subprocess.CompletedProcess[str]:
    docs = docs if isinstance(docs, list) else [docs]
    return kubectl(cp, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))


def new_namespace(cp: ControlPlane, prefix: str) -> str:
    """A fresh namespace, so that tests sharing the control plane never see each other's objects."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    result = kubectl(cp, "create", "namespace", name)
    assert result.returncode == 0, result.stderr
    return name

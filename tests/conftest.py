"""Shared fixtures: a real kube-apiserver + etcd, a real Mosquitto broker, and a loopback-only guard.

The control plane and the broker are session-scoped: starting kube-apiserver costs seconds, so tests
share one and isolate themselves by namespace or name prefix (and by MQTT topic prefix).
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from yurt_iot.testing import netguard
from yurt_iot.testing.controlplane import UNPRIVILEGED_USER, ControlPlane, TokenUser
from yurt_iot.testing.mosquitto import Mosquitto

# Installed at import time, before any test or fixture runs, and never removed (audit hooks cannot be).
netguard.install()

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"

_startup_report: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _no_swallowed_network_refusals() -> Iterator[None]:
    """Fail a test if the network guard refused something during it, even if a library swallowed it."""
    before = len(netguard.refusals())
    yield
    refused = netguard.refusals()[before:]
    if refused:
        pytest.fail("network guard refused non-loopback access:\n" + "\n".join(refused), pytrace=False)


@pytest.fixture(scope="session")
def control_plane_bin_dir() -> Path:
    """Directory with etcd, kube-apiserver and kubectl.

    scripts/build-control-plane prints it and returns at once when the binaries are cached;
    scripts/test runs it before pytest, so a cold build does not eat a test's timeout here.
    """
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-control-plane")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        pytest.fail(
            f"scripts/build-control-plane failed ({result.returncode}):\n{result.stderr[-4000:]}", pytrace=False
        )
    return Path(lines[-1])


@pytest.fixture(scope="session")
def control_plane(control_plane_bin_dir: Path) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver with the repository's CRDs (crds/*.yaml) installed and Established.

    Token users: ``admin`` (system:masters; the kubeconfig's user) and ``unprivileged`` (no
    permissions until a test grants some; ``control_plane.new_api_client(UNPRIVILEGED_USER)``).
    """
    cp = ControlPlane(control_plane_bin_dir, users=[TokenUser(UNPRIVILEGED_USER, secrets.token_urlsafe(24))])
    cp.start()
    try:
        _startup_report.update({f"{name} start-up": s for name, s in cp.startup_seconds.items()})
        if CRD_DIR.is_dir() and any(CRD_DIR.glob("*.yaml")):
            cp.install_crds(CRD_DIR)
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube_api_client(control_plane: ControlPlane) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` authenticated as the control plane's admin (system:masters)."""
    client = control_plane.new_api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_api_client: Any) -> str:
    """A fresh namespace named after the test.

    It is not deleted afterwards: without kube-controller-manager a deleted namespace stays
    Terminating forever anyway, and the whole control plane is discarded at the end of the session.
    """
    from kubernetes import client

    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 'test'}-{secrets.token_hex(3)}"
    client.CoreV1Api(kube_api_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """A running Mosquitto broker on 127.0.0.1 (``.host``, ``.port``).

    Shared by the whole session: a test that stops the broker must start it again (try/finally);
    ``start()`` reuses the same port.
    """
    broker = Mosquitto()
    broker.start()
    _startup_report["mosquitto start-up"] = broker.startup_seconds
    try:
        yield broker
    finally:
        broker.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _startup_report:
        terminalreporter.write_sep("-", "test infrastructure start-up (s)")
        for name, seconds in _startup_report.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f}")

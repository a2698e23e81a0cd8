"""docs/crd-reference.md: generated from the CRD schemas, current, and saying what the API server enforces."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from yurt_iot.api.iot import DeviceSpec
from yurt_iot.api.reference import REGENERATE, render_reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "crd-reference.md"


@pytest.fixture(scope="module")
def reference() -> str:
    return render_reference()


def chapter(reference: str, anchor: str) -> str:
    """The text of one kind's chapter, from its anchor to the next chapter."""
    start = reference.index(f'<a id="{anchor}"></a>\n\n## ')
    end = reference.find("\n## ", reference.index("\n## ", start) + 1)
    return reference[start : end if end != -1 else None]


def row(text: str, field: str) -> list[str]:
    """The cells of the table row of `field` (pipes escaped inside a cell are not separators)."""
    lines = [line for line in text.splitlines() if line.startswith(f"| `{field}` |")]
    assert len(lines) == 1, f"{field}: {len(lines)} rows"
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", lines[0])[1:-1]]


def test_committed_reference_is_current(reference: str) -> None:
    """A model edit without regenerating the reference fails here."""
    assert REFERENCE.read_text() == reference, f"docs/crd-reference.md is stale: run `{REGENERATE}`"


def test_the_module_prints_the_reference(reference: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "yurt_iot.api.reference"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == reference


def test_every_kind_and_served_version_has_a_chapter(reference: str) -> None:
    headings = re.findall(r"^## (\w+) `([\w./]+)`$", reference, re.MULTILINE)
    assert headings == [
        ("Device", "iot.openyurt.io/v1alpha1"),
        ("DeviceService", "iot.openyurt.io/v1alpha1"),
        ("DeviceProfile", "iot.openyurt.io/v1alpha1"),
        ("NodePool", "apps.openyurt.io/v1beta2"),
        ("NodePool", "apps.openyurt.io/v1beta1"),
        ("YurtAppSet", "apps.openyurt.io/v1beta1"),
        ("YurtAppDaemon", "apps.openyurt.io/v1alpha1"),
    ]
    device = chapter(reference, "device-v1alpha1")
    assert "- **Short names**: `dev`" in device
    assert "| MANAGED | boolean | `.spec.managed` | The managed status of device | with `-o wide` |" in device
    assert "- **Versions served**: `v1beta2` (stored), `v1beta1`" in chapter(reference, "nodepool-v1beta1")


def test_every_field_of_device_spec_is_listed(reference: str) -> None:
    device = chapter(reference, "device-v1alpha1")
    for field in DeviceSpec.model_fields.values():
        assert row(device, f"spec.{field.alias}")
    assert row(device, "spec.autoEvents[*].interval")[1] == "string"


def test_required_fields_are_marked(reference: str) -> None:
    device = chapter(reference, "device-v1alpha1")
    assert row(device, "spec")[2] == "yes"
    assert row(device, "spec.serviceName")[2] == "yes"
    assert row(device, "spec.deviceProperties.*.desiredValue")[2] == "yes"
    assert row(device, "spec.managed")[2] == "no"


def test_defaults_enums_and_bounds_are_shown(reference: str) -> None:
    nodepool = chapter(reference, "nodepool-v1beta2")
    constraints = row(nodepool, "spec.leaderReplicas")[3]
    assert "default `1`" in constraints and ">= 1" in constraints
    assert row(nodepool, "spec.type")[3].startswith('default `"Edge"`; one of `"Edge"`, `"Cloud"`')
    interval = row(chapter(reference, "device-v1alpha1"), "spec.autoEvents[*].interval")[3]
    assert interval == r"matches `^([0-9]+(\.[0-9]+)?(ns\|us\|µs\|ms\|s\|m\|h))+$`"


def test_cel_rules_show_their_messages(reference: str) -> None:
    nodepool = chapter(reference, "nodepool-v1beta2")
    assert "rule `self == oldSelf`: type is immutable" in row(nodepool, "spec.type")[3]
    assert "hostNetwork may not be set for a Cloud pool (reported at `spec.hostNetwork`)" in nodepool
    profile = chapter(reference, "deviceprofile-v1alpha1")
    assert "minimum must not be greater than maximum" in profile
    assert "rules in [its table](#deviceprofile-v1alpha1-spec-deviceresources-properties)" in profile


def test_every_link_has_its_target(reference: str) -> None:
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', reference))
    links = set(re.findall(r"\]\(#([^)]+)\)", reference))
    assert links and links <= anchors, sorted(links - anchors)

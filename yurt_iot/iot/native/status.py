"""The status a native Device should show, computed from its runner: pure functions, so that a reconcile can
compare the result with what the CR has and write only when something changed.

Two things keep status writes rare while readings flow many times a second:

* `lastConnected` moves only when the operating state changes or the stored value is older than a resolution
  (a minute by default): a healthy device polled every 100 ms costs no status write at all between refreshes.
* Conditions keep their `lastTransitionTime` while their status stays the same, so an unchanged condition
  compares equal and is not written again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["MANAGING", "SYNCED", "ConditionValue", "coarse_last_connected", "merge_conditions", "properties_patch"]

SYNCED = "DeviceSynced"
"""True while the device runs in the pool's runtime; False with the reason it cannot (no profile, bad spec)."""
MANAGING = "DeviceManaging"
"""True while desired values are written; False when a write failed (its message) or the device is LOCKED."""


@dataclass(frozen=True)
class ConditionValue:
    """A condition as the controller wants it; the transition time is filled in by `merge_conditions`."""

    type: str
    status: bool
    reason: str
    message: str = ""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(current: list[dict[str, Any]] | None, wanted: list[ConditionValue]) -> list[dict[str, Any]]:
    """`current` with each wanted condition set: the transition time is kept unless its status flips; conditions
    of other types (someone else's) are kept as they are."""
    result = [dict(c) for c in current or [] if c.get("type") not in {w.type for w in wanted}]
    previous = {c.get("type"): c for c in current or []}
    for want in wanted:
        status = "True" if want.status else "False"
        old = previous.get(want.type) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        condition = {"type": want.type, "status": status, "reason": want.reason, "lastTransitionTime": since or _now()}
        if want.message:
            condition["message"] = want.message
        result.append(condition)
    return result


def coarse_last_connected(
    stored: int | None, latest: int | None, *, state_changed: bool, resolution_ms: int
) -> int | None:
    """The `lastConnected` (ms) to write: the runner's `latest` contact when the state changed or the `stored`
    one is older than `resolution_ms`, else `stored` unchanged (no write for every reading)."""
    if latest is None:
        return stored
    if stored is not None and not state_changed and latest - stored < resolution_ms:
        return stored
    return latest


def properties_patch(current: Mapping[str, Any] | None, actual: Mapping[str, str]) -> dict[str, Any] | None:
    """A merge patch of `status.deviceProperties` to exactly `actual` (name -> actualValue): properties no
    longer wanted are removed (None), the others set; None when there is nothing to write at all."""
    patch: dict[str, Any] = {name: None for name in current or {} if name not in actual}
    patch.update({name: {"name": name, "actualValue": value} for name, value in actual.items()})
    return patch or None

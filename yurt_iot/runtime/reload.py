"""Live reload of `yurt-iot gateway --manifests`: edit a file, and only the devices it changed restart.

The files are polled (their contents hashed every `interval`, in a worker thread) rather than watched with
inotify: it needs no dependency, works on every filesystem, and sees a mounted ConfigMap's atomic symlink swap
like any other edit. A change loads the whole set again; `Gateway.apply` compares each device's spec and its
profile's spec with what runs, so an untouched device keeps its poll loop (no gap in its readings), a changed
one restarts with its new configuration, and a device no longer in the files stops. Files that do not load
(bad YAML, an invalid field, a missing profile) are logged and ignored: the last good configuration stays.

A device's `spec.deviceProperties` desired values are written when it starts, as the per-pool controller does
for devices in a cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from yurt_iot.api.iot import Device, DeviceProfile
from yurt_iot.runtime.device import DeviceRunner
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.manifests import ManifestError, device_profiles, load_manifests, manifest_files
from yurt_iot.runtime.sdk import DriverError
from yurt_iot.runtime.values import Value

logger = logging.getLogger(__name__)

Desired = list[tuple[Device, DeviceProfile]]


def fingerprint(paths: Sequence[Path]) -> str:
    """A hash of the names and contents of the manifest files: equal as long as nothing was edited."""
    digest = hashlib.sha256()
    for file in manifest_files(paths):
        digest.update(str(file).encode() + b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError as error:  # removed between listing and reading: the next poll sees the new set
            digest.update(repr(error).encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ManifestReloader:
    """Keeps a Gateway running what the manifest files say."""

    def __init__(self, gateway: Gateway, paths: Sequence[Path], *, interval: float = 0.5) -> None:
        self.gateway, self.paths, self.interval = gateway, tuple(paths), interval
        self._seen: str | None = None
        self.reloads = 0
        """Changes of the files applied (for tests and logs)."""

    async def load(self) -> Desired:
        """The devices and profiles the files describe now; ManifestError if they cannot be used."""
        self._seen = await asyncio.to_thread(fingerprint, self.paths)
        return await asyncio.to_thread(lambda: device_profiles(load_manifests(self.paths)))

    async def apply(self, desired: Desired) -> None:
        """Start, restart or stop devices so that the gateway runs `desired`; a device that cannot start is
        logged and the others carry on."""
        wanted = {device.metadata.name for device, _ in desired}
        for name in [n for n in self.gateway.devices if n not in wanted]:
            await self.gateway.remove(name)
            logger.info("device %s removed", name)
        for device, profile in desired:
            name = device.metadata.name or ""
            before = self.gateway.devices.get(name)
            try:
                runner = await self.gateway.apply(device, profile)
            except Exception:
                logger.exception("device %s not started", name)
                continue
            if runner is not before:
                logger.info("device %s %s", name, "started" if before is None else "restarted with its new spec")
                await _write_desired(runner)

    async def watch(self) -> None:
        """Poll the files until cancelled, applying each change."""
        while True:
            await asyncio.sleep(self.interval)
            if await asyncio.to_thread(fingerprint, self.paths) == self._seen:
                continue
            try:
                desired = await self.load()
            except ManifestError as error:
                logger.error("manifests not applied, the last good configuration stays in force:\n%s", error)
                continue
            await self.apply(desired)
            self.reloads += 1
            logger.info("manifests reloaded: %d devices running", len(self.gateway.devices))


async def _write_desired(runner: DeviceRunner) -> None:
    wanted: dict[str, Value] = {p.name: p.desired_value for p in (runner.device.spec.device_properties or {}).values()}
    if not wanted:
        return
    try:
        await runner.write(wanted)
    except (DriverError, ValueError) as error:
        logger.warning("device %s: desired values %s not written: %s", runner.name, wanted, error)
    else:
        logger.info("device %s: desired values written: %s", runner.name, wanted)

"""OpenYurt yurt-iot-dock's command-line conventions, read into ours, so that its Deployments run `yurt-iot dock`
unchanged (`--nodepool`, `--core-metadata-address edgex-core-metadata:59881`, `--version napa`,
`--health-probe-bind-address :8081`, ...; see `yurt-iot dock --help`, "OpenYurt yurt-iot-dock flags").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EDGEX_RELEASES",
    "EdgeXAddresses",
    "bind_address",
    "edgex_addresses",
    "edgex_url",
    "ops_address",
]

EDGEX_RELEASES = ("minnesota", "napa", "odessa")
"""EdgeX 3.0, 3.1 and 4.0 by name: all serve the v3 API this controller speaks (OpenYurt takes the first two)."""

_ALL_INTERFACES = "0.0.0.0"
# What OpenYurt's dock assumes when its Deployment (made by a PlatformAdmin) passes only --namespace and --version.
_OPENYURT_METADATA = "edgex-core-metadata:59881"
_OPENYURT_COMMAND = "edgex-core-command:59882"
_OPENYURT_SYNC_PERIOD = 5.0
_RESYNC = 30.0  # ours: the bus brings changes at once, the resync is only the backstop


def edgex_url(address: str) -> str:
    """An EdgeX service address as OpenYurt gives it (``edgex-core-metadata:59881``), or a URL, as a URL."""
    return address if "://" in address else f"http://{address}"


def bind_address(value: str, flag: str) -> tuple[str, int] | None:
    """A Go listen address (``:8081`` on every interface, ``127.0.0.1:8081``; ``0`` switches it off) as
    (host, port), None when off; ValueError naming `flag` when it is neither."""
    if value == "0":
        return None
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag}: expected [HOST]:PORT such as :8081, or 0 to switch it off, got {value!r}")
    return host.strip("[]") or _ALL_INTERFACES, int(port)


@dataclass(frozen=True)
class EdgeXAddresses:
    """Where EdgeX is (no metadata URL: no EdgeX sync) and how often it is listed in full."""

    metadata_url: str | None
    command_url: str | None
    resync_period: float


def edgex_addresses(
    metadata: str | None, command: str | None, resync: float | None, release: str | None, bus_host: str | None
) -> EdgeXAddresses:
    """The dock's EdgeX settings from its flags. A `release` (`--version`) marks OpenYurt's command line, whose
    dock always syncs with EdgeX: its default addresses then apply, and its 5 s period where there is no bus to
    bring changes at once. ValueError naming the flag that is wrong."""
    if release is not None:
        if release.lower() not in EDGEX_RELEASES:
            raise ValueError(f"--version: unknown EdgeX release {release!r} (known: {', '.join(EDGEX_RELEASES)})")
        metadata, command = metadata or _OPENYURT_METADATA, command or _OPENYURT_COMMAND
        if resync is None and bus_host is None:
            resync = _OPENYURT_SYNC_PERIOD
    return EdgeXAddresses(
        edgex_url(metadata) if metadata else None,
        edgex_url(command) if command else None,
        _RESYNC if resync is None else resync,
    )


def ops_address(probes: str | None, metrics: str | None, host: str, port: int) -> tuple[str, int]:
    """Where the ops endpoints listen: `probes` (`--health-probe-bind-address`) if given, else host and port.
    /metrics is one of them, so `metrics` (`--metrics-bind-address`) is only checked."""
    if metrics is not None:
        bind_address(metrics, "--metrics-bind-address")
    if probes is None:
        return host, port
    return bind_address(probes, "--health-probe-bind-address") or (host, port)

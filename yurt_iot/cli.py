"""The `yurt-iot` command: one subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yurt_iot import __version__
from yurt_iot.runtime.spool import OverflowPolicy

app = typer.Typer(
    name="yurt-iot",
    help="OpenYurt-compatible IoT device management for Kubernetes edge clusters.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"yurt-iot {__version__}")


@app.command()
def crds(
    out: Annotated[Path, typer.Option(help="Directory the CRD manifests are written to.")] = Path("crds"),
    check: Annotated[bool, typer.Option(help="Only check that the directory is up to date; exit 1 if not.")] = False,
) -> None:
    """Write the CRD manifests generated from the API models (the single source of truth)."""
    from yurt_iot.api.crd import crd_files, write_crds

    if check:
        wanted = crd_files()
        present = {p.name: p.read_text() for p in out.glob("*.yaml")} if out.is_dir() else {}
        stale = sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))
        if stale:
            typer.echo(f"{out} is stale ({', '.join(stale)}); run `yurt-iot crds --out {out}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date ({len(wanted)} CRDs)")
        return
    for path in write_crds(out):
        typer.echo(f"wrote {path}")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or directories (searched recursively).")],
) -> None:
    """Check manifests as the API server would, before `kubectl apply`: exit 1 on any error."""
    from yurt_iot.runtime.manifests import validate_manifests

    missing = [p for p in paths if not p.exists()]
    if missing:
        typer.echo(f"no such file or directory: {', '.join(map(str, missing))}", err=True)
        raise typer.Exit(2)
    report = validate_manifests(paths)
    for line in report.errors:
        typer.echo(f"error: {line}")
    for line in report.warnings:
        typer.echo(f"warning: {line}")
    typer.echo(f"{report.objects} objects: {len(report.errors)} errors, {len(report.warnings)} warnings", err=True)
    if report.errors:
        raise typer.Exit(1)


@app.command()
def gateway(
    manifests: Annotated[list[Path], typer.Option(help="Manifest files or directories (Device, DeviceProfile).")],
    mqtt_host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    mqtt_username: Annotated[str | None, typer.Option(help="MQTT user name.")] = None,
    mqtt_password: Annotated[str | None, typer.Option(envvar="YURT_IOT_MQTT_PASSWORD", help="MQTT password.")] = None,
    mqtt_tls: Annotated[bool, typer.Option(help="Connect to the broker with TLS.")] = False,
    mqtt_ca: Annotated[
        Path | None, typer.Option(help="CA file for the broker's certificate (with --mqtt-tls).")
    ] = None,
    qos: Annotated[int, typer.Option(help="MQTT QoS: 1 (nothing lost) or 0.")] = 1,
    topic_prefix: Annotated[str, typer.Option(help="Events go to <prefix>/<service>/<profile>/<device>/<source>.")] = (
        "edgex/events/device"
    ),
    spool_dir: Annotated[Path, typer.Option(help="Directory of the disk queue for store-and-forward.")] = Path(
        "/var/lib/yurt-iot/spool"
    ),
    spool_max_mb: Annotated[int, typer.Option(help="Bound of the disk queue, in MiB.")] = 1024,
    overflow: Annotated[OverflowPolicy, typer.Option(help="What a full queue does with a new event.")] = (
        OverflowPolicy.REJECT_NEW
    ),
    ops_host: Annotated[str, typer.Option(help="Address of /metrics, /healthz and /readyz.")] = "127.0.0.1",
    ops_port: Annotated[int, typer.Option(help="Port of /metrics, /healthz and /readyz.")] = 9464,
    log_format: Annotated[str, typer.Option(help="console or json.")] = "console",
    reload: Annotated[
        bool, typer.Option(help="Apply edits of the manifest files live (only the devices they change restart).")
    ] = True,
) -> None:
    """Run devices from manifest files and publish their readings to MQTT (no Kubernetes needed)."""
    import asyncio
    import signal

    from yurt_iot.logs import setup_logging
    from yurt_iot.runtime.manifests import ManifestError
    from yurt_iot.runtime.publisher import MqttSettings
    from yurt_iot.runtime.service import GatewayOptions, run_gateway

    setup_logging("json" if log_format == "json" else "console")
    options = GatewayOptions(
        manifests=tuple(manifests),
        mqtt=MqttSettings(
            host=mqtt_host, port=mqtt_port, username=mqtt_username, password=mqtt_password,
            tls=mqtt_tls, ca_file=mqtt_ca, qos=1 if qos else 0,
        ),
        spool_dir=spool_dir,
        spool_max_bytes=spool_max_mb << 20,
        overflow=overflow,
        topic_prefix=topic_prefix,
        ops_host=ops_host,
        ops_port=ops_port,
        reload_interval=0.5 if reload else None,
    )  # fmt: skip

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_gateway(options, stop)

    try:
        asyncio.run(main())
    except ManifestError as error:
        typer.echo(f"the manifests cannot be used:\n{error}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()

"""The `yurt-iot` command: one subcommand per job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

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


# Options of the processes that publish readings (gateway, dock): declared once.
MqttHost = Annotated[str, typer.Option(help="MQTT broker host.")]
MqttPort = Annotated[int, typer.Option(help="MQTT broker port.")]
MqttUsername = Annotated[str | None, typer.Option(help="MQTT user name.")]
MqttPassword = Annotated[str | None, typer.Option(envvar="YURT_IOT_MQTT_PASSWORD", help="MQTT password.")]
MqttTls = Annotated[bool, typer.Option(help="Connect to the broker with TLS.")]
MqttCa = Annotated[Path | None, typer.Option(help="CA file for the broker's certificate (with --mqtt-tls).")]
Qos = Annotated[int, typer.Option(help="MQTT QoS: 1 (nothing lost) or 0.")]
TopicPrefix = Annotated[str, typer.Option(help="Events go to <prefix>/<service>/<profile>/<device>/<source>.")]
SpoolDir = Annotated[Path, typer.Option(help="Directory of the disk queue for store-and-forward.")]
SpoolMaxMb = Annotated[int, typer.Option(help="Bound of the disk queue, in MiB.")]
Overflow = Annotated[OverflowPolicy, typer.Option(help="What a full queue does with a new event.")]
OpsHost = Annotated[str, typer.Option(help="Address of /metrics, /healthz, /readyz and the devices API.")]
OpsPort = Annotated[int, typer.Option(help="Port of /metrics, /healthz, /readyz and the devices API.")]
LogFormat = Annotated[str, typer.Option(help="console or json.")]


class Level(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogLevel = Annotated[Level, typer.Option(help="Least severe messages logged; debug also lets asyncua's traffic in.")]
DEFAULT_TOPIC_PREFIX = "edgex/events/device"
OPENYURT_FLAGS = "OpenYurt yurt-iot-dock flags"
DEFAULT_SPOOL_DIR = Path("/var/lib/yurt-iot/spool")


def _mqtt_settings(
    host: str, port: int, username: str | None, password: str | None, tls: bool, ca: Path | None, qos: int
) -> Any:
    from yurt_iot.runtime.publisher import MqttSettings

    try:
        return MqttSettings(host=host, port=port, username=username, password=password, tls=tls, ca_file=ca,
                            qos=1 if qos else 0)  # fmt: skip
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on a new event loop; SIGINT and SIGTERM set `stop`, for a clean shutdown."""
    import signal

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(run())


@app.command()
def gateway(
    manifests: Annotated[list[Path], typer.Option(help="Manifest files or directories (Device, DeviceProfile).")],
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    mqtt_username: MqttUsername = None,
    mqtt_password: MqttPassword = None,
    mqtt_tls: MqttTls = False,
    mqtt_ca: MqttCa = None,
    qos: Qos = 1,
    topic_prefix: TopicPrefix = DEFAULT_TOPIC_PREFIX,
    spool_dir: SpoolDir = DEFAULT_SPOOL_DIR,
    spool_max_mb: SpoolMaxMb = 1024,
    overflow: Overflow = OverflowPolicy.REJECT_NEW,
    ops_host: OpsHost = "127.0.0.1",
    ops_port: OpsPort = 9464,
    log_format: LogFormat = "console",
    log_level: LogLevel = Level.info,
    reload: Annotated[
        bool, typer.Option(help="Apply edits of the manifest files live (only the devices they change restart).")
    ] = True,
) -> None:
    """Run devices from manifest files and publish their readings to MQTT (no Kubernetes needed)."""
    from yurt_iot.logs import setup_logging
    from yurt_iot.runtime.manifests import ManifestError
    from yurt_iot.runtime.service import GatewayOptions, run_gateway

    setup_logging("json" if log_format == "json" else "console", log_level.value)
    options = GatewayOptions(
        manifests=tuple(manifests),
        mqtt=_mqtt_settings(mqtt_host, mqtt_port, mqtt_username, mqtt_password, mqtt_tls, mqtt_ca, qos),
        spool_dir=spool_dir,
        spool_max_bytes=spool_max_mb << 20,
        overflow=overflow,
        topic_prefix=topic_prefix,
        ops_host=ops_host,
        ops_port=ops_port,
        reload_interval=0.5 if reload else None,
    )
    try:
        _run_until_signalled(lambda stop: run_gateway(options, stop))
    except ManifestError as error:
        typer.echo(f"the manifests cannot be used:\n{error}", err=True)
        raise typer.Exit(1) from None


@app.command()
def dock(
    namespace: Annotated[str, typer.Option(help="Namespace of the pool's Device, DeviceService, DeviceProfile CRs.")],
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool",
            "--nodepool",
            envvar="YURT_IOT_POOL",
            help="The NodePool served; default: the pool label of this node (--node), else of this pod's node.",
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(envvar="NODE_NAME", help="This node; its apps.openyurt.io/nodepool label names the pool."),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(envvar="KUBECONFIG", help="Default: ~/.kube/config, or the in-cluster account.")
    ] = None,
    native: Annotated[
        bool, typer.Option(help="Drive the devices of native:// DeviceServices with the built-in drivers.")
    ] = True,
    edgex_metadata: Annotated[
        str | None,
        typer.Option(
            "--edgex-metadata",
            "--core-metadata-address",
            help="EdgeX core-metadata URL (or HOST:PORT): keep the pool's CRs and EdgeX in sync.",
        ),
    ] = None,
    edgex_command: Annotated[
        str | None,
        typer.Option(
            "--edgex-command",
            "--core-command-address",
            help="EdgeX core-command URL (or HOST:PORT), for desired property values of EdgeX devices.",
        ),
    ] = None,
    edgex_bus_host: Annotated[
        str | None, typer.Option(help="EdgeX message bus (MQTT) host, for instant sync from its system events.")
    ] = None,
    edgex_bus_port: Annotated[int, typer.Option(help="EdgeX message bus port.")] = 1883,
    resync: Annotated[
        float | None,
        typer.Option(
            "--resync",
            "--edge-sync-period",
            help="Seconds between full comparisons with EdgeX, the backstop of the bus (default 30; 5 with --version "
            "and no bus, as OpenYurt).",
        ),
    ] = None,
    leader_elect: Annotated[
        bool, typer.Option(help="Sync with EdgeX only while holding the pool's Lease (for several replicas).")
    ] = False,
    cleanup_on_exit: Annotated[
        bool, typer.Option(help="On exit, delete the pool's edge-discovered CRs and release finalizers (retiring).")
    ] = False,
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    mqtt_username: MqttUsername = None,
    mqtt_password: MqttPassword = None,
    mqtt_tls: MqttTls = False,
    mqtt_ca: MqttCa = None,
    qos: Qos = 1,
    topic_prefix: TopicPrefix = DEFAULT_TOPIC_PREFIX,
    spool_dir: SpoolDir = DEFAULT_SPOOL_DIR,
    spool_max_mb: SpoolMaxMb = 1024,
    overflow: Overflow = OverflowPolicy.REJECT_NEW,
    ops_host: OpsHost = "127.0.0.1",
    ops_port: OpsPort = 9464,
    log_format: LogFormat = "console",
    log_level: LogLevel = Level.info,
    edgex_version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="EdgeX release (minnesota, napa, odessa), as OpenYurt's: EdgeX sync on, at OpenYurt's default "
            "addresses (edgex-core-metadata:59881, edgex-core-command:59882) unless given.",
            rich_help_panel=OPENYURT_FLAGS,
        ),
    ] = None,
    core_data_address: Annotated[
        str | None,
        typer.Option(help="Accepted and unused, as in OpenYurt.", rich_help_panel=OPENYURT_FLAGS),
    ] = None,
    health_probe_bind_address: Annotated[
        str | None,
        typer.Option(
            help="[HOST]:PORT of /healthz and /readyz (and all of the ops endpoints): sets --ops-host and --ops-port.",
            rich_help_panel=OPENYURT_FLAGS,
        ),
    ] = None,
    metrics_bind_address: Annotated[
        str | None,
        typer.Option(help="Accepted: /metrics is served with the probes (--ops-port).", rich_help_panel=OPENYURT_FLAGS),
    ] = None,
) -> None:
    """The per-pool device controller (OpenYurt's yurt-iot-dock): the pool's Device CRs driven natively and/or
    kept in sync with EdgeX. OpenYurt's yurt-iot-dock flags are accepted too."""
    import contextlib

    from yurt_iot.iot.dock_flags import edgex_addresses, ops_address
    from yurt_iot.iot.edgex.sync import EdgeXSyncOptions, run_edgex_sync
    from yurt_iot.iot.native import NativeOptions, native_backend
    from yurt_iot.iot.pool import own_pod, served_pool
    from yurt_iot.kube import KubeClient, KubeMetrics
    from yurt_iot.logs import setup_logging
    from yurt_iot.ops import OpsServer
    from yurt_iot.runtime.publisher import MqttSettings

    try:
        edgex = edgex_addresses(edgex_metadata, edgex_command, resync, edgex_version, edgex_bus_host)
        ops_host, ops_port = ops_address(health_probe_bind_address, metrics_bind_address, ops_host, ops_port)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if not native and edgex.metadata_url is None:
        raise typer.BadParameter("nothing to do: give --edgex-metadata, or leave --native on")
    pod = own_pod() if pool is None and node is None else None
    if pool is None and node is None and pod is None:
        raise typer.BadParameter(
            "give --pool, or --node (NODE_NAME) whose apps.openyurt.io/nodepool label names it (in a pod: its node)"
        )
    setup_logging("json" if log_format == "json" else "console", log_level.value)
    mqtt = _mqtt_settings(mqtt_host, mqtt_port, mqtt_username, mqtt_password, mqtt_tls, mqtt_ca, qos)

    async def main(stop: asyncio.Event) -> None:
        async with KubeClient.from_kubeconfig(kubeconfig) as kube, contextlib.AsyncExitStack() as stack:
            served = await served_pool(kube, pool, node, pod)
            if native:
                options = NativeOptions(
                    namespace=namespace, mqtt=mqtt, spool_dir=spool_dir, pool=served,
                    spool_max_bytes=spool_max_mb << 20, overflow=overflow, topic_prefix=topic_prefix,
                    ops_host=ops_host, ops_port=ops_port,
                )  # fmt: skip
                kube_metrics = (await stack.enter_async_context(native_backend(options, kube=kube))).kube_metrics
            else:  # the EdgeX sync alone: the ops endpoints are its own
                kube_metrics = KubeMetrics()
                ops = OpsServer(kube_metrics.registry, host=ops_host, port=ops_port)
                await ops.start()
                stack.push_async_callback(ops.close)
            if edgex.metadata_url is None:
                await stop.wait()
                return
            bus = None if edgex_bus_host is None else MqttSettings(host=edgex_bus_host, port=edgex_bus_port)
            sync = EdgeXSyncOptions(
                pool=served, namespace=namespace, metadata_url=edgex.metadata_url, command_url=edgex.command_url,
                bus=bus, resync_period=edgex.resync_period, leader_election=leader_elect, cleanup=cleanup_on_exit,
            )  # fmt: skip
            await run_edgex_sync(kube, sync, stop, metrics=kube_metrics)

    _run_until_signalled(main)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="Seconds to run; default: until Ctrl-C.")] = None,
    manifests: Annotated[
        Path | None,
        typer.Option(envvar="YURT_IOT_EXAMPLES", help="Device manifests to simulate; default: examples/iot."),
    ] = None,
    mqtt_port: Annotated[int, typer.Option(help="Port of the broker the gateway publishes readings to.")] = 1883,
    ops_port: Annotated[int, typer.Option(help="Port of the gateway's /metrics and devices API.")] = 9464,
    kube: Annotated[bool, typer.Option(help="Apply the manifests to a cluster instead of running them here.")] = False,
    kubeconfig: Annotated[
        Path | None, typer.Option(envvar="KUBECONFIG", help="With --kube: the cluster (default ~/.kube/config).")
    ] = None,
    namespace: Annotated[str, typer.Option(help="With --kube: the namespace of the devices.")] = "default",
    broker: Annotated[
        str, typer.Option(help="MQTT broker: auto (mosquitto when installed, else built-in), builtin or mosquitto.")
    ] = "auto",
) -> None:
    """Simulated Modbus, OPC-UA and MQTT devices, a broker and the gateway, with a live table (no cluster needed)."""
    import asyncio

    from rich.console import Console

    from yurt_iot.demo.children import BrokerChoice
    from yurt_iot.demo.cluster import apply_to_cluster
    from yurt_iot.demo.live import DemoOptions, default_manifests, run_demo
    from yurt_iot.demo.plan import DemoError

    try:
        broker_choice = BrokerChoice(broker)
    except ValueError:
        raise typer.BadParameter(f"{broker!r} is not one of auto, builtin, mosquitto", param_hint="--broker") from None
    repository_examples = Path(__file__).resolve().parent.parent / "examples" / "iot"
    try:
        directory = manifests or default_manifests([repository_examples, Path("examples/iot")])
        if kube:
            asyncio.run(apply_to_cluster(directory, kubeconfig, namespace, Console()))
            return
        options = DemoOptions(directory, duration, mqtt_port=mqtt_port, ops_port=ops_port, broker=broker_choice)
        asyncio.run(run_demo(options))
    except DemoError as error:
        typer.echo(f"yurt-iot demo: {error}", err=True)
        raise typer.Exit(1) from None


devices = typer.Typer(
    help="List, read and write the devices of a running gateway, or (--kube) the Device CRs of a cluster.",
    no_args_is_help=True,
)
app.add_typer(devices, name="devices")


class Output(StrEnum):
    table = "table"
    json = "json"


GatewayUrl = Annotated[
    str, typer.Option("--gateway", envvar="YURT_IOT_GATEWAY", help="The gateway's ops address (its --ops-port).")
]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json.")]
Kube = Annotated[bool, typer.Option("--kube", help="The Device CRs of a cluster instead of a gateway's devices.")]
KubeConfig = Annotated[
    Path | None, typer.Option(envvar="KUBECONFIG", help="With --kube: the cluster (default ~/.kube/config).")
]
KubeContext = Annotated[str | None, typer.Option("--context", help="With --kube: the kubeconfig context.")]
Namespace = Annotated[
    str | None, typer.Option("--namespace", "-n", help="With --kube: default: the context's, else default.")
]
Pool = Annotated[str | None, typer.Option(help="With --kube: only the devices of this NodePool (spec.nodePool).")]


def _cluster_target(
    kube: bool, kubeconfig: Path | None, context: str | None, namespace: str | None, pool: str | None
) -> Any:
    """The cluster to use with --kube, None without; cluster options without --kube are a mistake worth saying."""
    from yurt_iot.iot.devices_cli import ClusterTarget

    if kube:
        return ClusterTarget(kubeconfig, context, namespace, pool)
    given = [flag for flag, value in (("--context", context), ("--namespace", namespace), ("--pool", pool)) if value]
    if given:
        raise typer.BadParameter(f"{', '.join(given)}: only with --kube (without it, the devices are a gateway's)")
    return None


def _in_cluster(work: Coroutine[Any, Any, Any]) -> Any:
    """Run one cluster operation; a clear message and exit 1 if it fails."""
    from yurt_iot.iot.devices_cli import DevicesError

    try:
        return asyncio.run(work)
    except DevicesError as error:
        typer.echo(f"yurt-iot devices: {error}", err=True)
        raise typer.Exit(1) from None


def _call(gateway: str, method: str, path: str, body: dict[str, str] | None = None) -> Any:
    """A devices API request; a clear message and exit 1 if the gateway cannot be reached or refuses."""
    import httpx

    url = f"{gateway.rstrip('/')}/api/v1/devices{path}"
    try:
        response = httpx.request(method, url, json=body, timeout=10)
    except httpx.HTTPError as error:
        typer.echo(f"cannot reach the gateway at {gateway}: {error}", err=True)
        raise typer.Exit(1) from None
    document = response.json() if response.headers.get("content-type") == "application/json" else {}
    if response.is_error:
        typer.echo(f"{method} {url}: {document.get('error') or response.text.strip()}", err=True)
        raise typer.Exit(1)
    return document


def _print(document: Any, output: Output, table: Any) -> None:
    import json

    from rich.console import Console

    if output is Output.json:
        typer.echo(json.dumps(document, indent=2))
    else:
        Console().print(table)


@devices.command("ls")
def devices_ls(
    gateway: GatewayUrl = "http://127.0.0.1:9464",
    output: OutputOption = Output.table,
    kube: Kube = False,
    kubeconfig: KubeConfig = None,
    context: KubeContext = None,
    namespace: Namespace = None,
    pool: Pool = None,
) -> None:
    """List the gateway's devices with their state and latest values (--kube: the namespace's Device CRs)."""
    from yurt_iot.demo.table import devices_table

    target = _cluster_target(kube, kubeconfig, context, namespace, pool)
    if target is not None:
        from yurt_iot.iot import devices_cli

        listed = _in_cluster(devices_cli.list_devices(target))
        _print(listed, output, devices_cli.devices_table(listed))
        return
    found = _call(gateway, "GET", "")["devices"]
    _print(found, output, devices_table(found))


@devices.command("read")
def devices_read(
    name: Annotated[str, typer.Argument(help="The device.")],
    resources: Annotated[list[str] | None, typer.Argument(help="Resources to read now; none: latest values.")] = None,
    gateway: GatewayUrl = "http://127.0.0.1:9464",
    output: OutputOption = Output.table,
    kube: Kube = False,
    kubeconfig: KubeConfig = None,
    context: KubeContext = None,
    namespace: Namespace = None,
    pool: Pool = None,
) -> None:
    """Read resources of a device now (or show the latest values it polled); --kube: the values its controller
    reports in status.deviceProperties, with the desired values of its spec."""
    from rich import box
    from rich.table import Table

    from yurt_iot.demo.table import format_value

    target = _cluster_target(kube, kubeconfig, context, namespace, pool)
    if target is not None:
        from yurt_iot.iot import devices_cli

        document = _in_cluster(devices_cli.read_device(target, name, resources or ()))
        _print(document, output, devices_cli.values_table(document))
        return
    if resources:
        values = {r: _call(gateway, "GET", f"/{name}/{r}")["value"] for r in resources}
    else:
        values = {r: entry["value"] for r, entry in _call(gateway, "GET", f"/{name}")["latest"].items()}
    table = Table("RESOURCE", "VALUE", box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
    for resource, value in values.items():
        table.add_row(resource, format_value(value))
    _print({"device": name, "values": values}, output, table)


@devices.command("write")
def devices_write(
    name: Annotated[str, typer.Argument(help="The device.")],
    assignments: Annotated[list[str], typer.Argument(help="RESOURCE=VALUE, values as in desiredValue.")],
    gateway: GatewayUrl = "http://127.0.0.1:9464",
    kube: Kube = False,
    kubeconfig: KubeConfig = None,
    context: KubeContext = None,
    namespace: Namespace = None,
    pool: Pool = None,
    wait: Annotated[
        bool, typer.Option(help="With --kube: wait until the device's status reports the values written.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="With --kube --wait: seconds to wait; then exit 1.")] = 30.0,
) -> None:
    """Write resources of a device, e.g. `yurt-iot devices write thermostat-1 SetPoint=22.5`; --kube: set their
    desiredValue in the Device CR (other desired values are kept) for its controller to write."""
    values: dict[str, str] = {}
    for assignment in assignments:
        resource, separator, value = assignment.partition("=")
        if not separator or not resource:
            typer.echo(f"expected RESOURCE=VALUE, got {assignment!r}", err=True)
            raise typer.Exit(2)
        values[resource] = value
    written = ", ".join(f"{r}={v}" for r, v in values.items())
    target = _cluster_target(kube, kubeconfig, context, namespace, pool)
    if target is not None:
        from rich.console import Console

        from yurt_iot.iot.devices_cli import write_device

        with Console(stderr=True).status(f"writing {name}: {written}") as progress:
            _in_cluster(write_device(target, name, values, wait=timeout if wait else None, on_progress=progress.update))
        typer.echo(f"{name}: {'reported' if wait else 'desired'} {written}")
        return
    _call(gateway, "PUT", f"/{name}", values)
    typer.echo(f"{name}: wrote {written}")


if __name__ == "__main__":
    app()

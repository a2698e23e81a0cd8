"""How fast one pool's EdgeX sync pushes a burst of Device CRs to EdgeX, and what it costs.

What runs, all on 127.0.0.1: a real etcd + kube-apiserver (yurt_iot.testing.controlplane, the CRDs installed),
Mosquitto as EdgeX's message bus, EdgeX core-metadata (the contract double of yurt_iot/testing/edgex: the real
edgex-go cannot be built here), and the controller (yurt_iot.iot.edgex.sync) in a process of its own, so that
its RSS and its API requests are its own. Then:

1. a DeviceService and a DeviceProfile CR, and the controller waits until they are in EdgeX;
2. `--devices` Device CRs created at once (`--concurrency` POSTs in flight);
3. measured: seconds until every device is in EdgeX, and until every CR has ``status.synced: true``
   (seen through a watch); the controller's API requests per device (by verb) and its RSS (now and peak).

    python bench/sync.py --devices 1000
    python bench/sync.py --devices 10000 --workers 8

The machine has 2 cores shared by etcd, kube-apiserver, EdgeX, the bench and the controller: the figures are
for the whole chain on one box, not the controller alone.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
POOL = "bench"
SERVICE, PROFILE = "bench-modbus", "bench-thermostat"
API_VERSION = "iot.openyurt.io/v1alpha1"


# -- the controller process ------------------------------------------------------------------------------


async def controller(args: argparse.Namespace) -> None:
    """Run the sync; print ``ready`` once EdgeX was listed, and a JSON line of counters on each SIGUSR1."""
    from yurt_iot.iot.edgex.sync import EdgeXSync, EdgeXSyncOptions
    from yurt_iot.kube import KubeClient
    from yurt_iot.runtime.mqttclient import MqttSettings
    from yurt_iot.testing.waiting import async_wait_for

    host, port = args.mqtt.split(":")
    options = EdgeXSyncOptions(
        pool=POOL,
        namespace=args.namespace,
        metadata_url=args.metadata_url,
        bus=MqttSettings(host, int(port)),
        workers=args.workers,
    )
    requests: collections.Counter[str] = collections.Counter()
    async with KubeClient.from_kubeconfig(args.kubeconfig) as kube:
        plain = kube.request

        async def counted(method: str, path: str, **kwargs: Any) -> Any:
            requests[f"{method} {'status' if path.endswith('/status') else 'object'}"] += 1
            return await plain(method, path, **kwargs)

        kube.request = counted  # type: ignore[method-assign]
        sync = EdgeXSync(kube, options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(_counters(requests)), flush=True))
        task = asyncio.create_task(sync.run(stop))
        await async_wait_for(lambda: sync.edge.reachable, within=60, interval=0.05, what="EdgeX listed")
        print("ready", flush=True)
        await task


def _counters(requests: collections.Counter[str]) -> dict[str, Any]:
    status = Path("/proc/self/status").read_text()
    memory = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")}
    return {"requests": dict(requests), "rss_kib": memory["VmRSS"], "peak_rss_kib": memory["VmHWM"]}


# -- the bench ------------------------------------------------------------------------------------------


def _control_plane_bin() -> Path:
    out = subprocess.run([str(REPO / "scripts" / "build-control-plane")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _device(i: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Device",
        "metadata": {"name": f"dev-{i:05d}"},
        "spec": {
            "serviceName": SERVICE,
            "profileName": PROFILE,
            "notify": False,
            "nodePool": POOL,
            "managed": True,
            "protocols": {"modbus-tcp": {"Address": "127.0.0.1", "Port": "502", "UnitID": str(i % 247 + 1)}},
        },
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers and the controller process, then time the burst (on an event loop of its own)."""
    from yurt_iot.testing.controlplane import ControlPlane
    from yurt_iot.testing.edgex import EdgeX
    from yurt_iot.testing.mosquitto import Mosquitto

    cp = ControlPlane(_control_plane_bin())
    broker = Mosquitto()
    cp.start()
    try:
        cp.install_crds(REPO / "crds")
        broker.start()
        with EdgeX(broker) as edgex, tempfile.TemporaryFile() as log:
            namespace = "bench"
            cp.kubectl("create", "namespace", namespace)
            command = [
                sys.executable, __file__, "controller", "--kubeconfig", str(cp.kubeconfig), "--namespace", namespace,
                "--metadata-url", edgex.metadata_url, "--mqtt", f"{broker.host}:{broker.port}",
                "--workers", str(args.workers),
            ]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
            try:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    log.seek(0)
                    raise RuntimeError(f"controller did not start:\n{log.read().decode()[-3000:]}")
                return asyncio.run(_measure(args, cp.kubeconfig, edgex.metadata_url, namespace, proc))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    finally:
        broker.close()
        cp.stop()


async def _measure(
    args: argparse.Namespace, kubeconfig: Path, metadata_url: str, namespace: str, proc: subprocess.Popen[str]
) -> dict[str, Any]:
    from yurt_iot.kube import KubeClient

    async with KubeClient.from_kubeconfig(kubeconfig) as kube, httpx.AsyncClient(base_url=metadata_url) as http:
        return await _burst(args, kube, http, namespace, proc)


async def _burst(
    args: argparse.Namespace, kube: Any, http: httpx.AsyncClient, namespace: str, proc: subprocess.Popen[str]
) -> dict[str, Any]:
    from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
    from yurt_iot.kube import Informer
    from yurt_iot.testing.waiting import async_wait_for

    await kube.resource(DeviceService, namespace).create(
        {
            "apiVersion": API_VERSION,
            "kind": "DeviceService",
            "metadata": {"name": SERVICE},
            "spec": {"baseAddress": "http://127.0.0.1:59901", "nodePool": POOL},
        }
    )
    resources = [
        {"name": "Temperature", "description": "", "isHidden": False,
         "properties": {"valueType": "Float32", "readWrite": "R", "scale": "0.1"},
         "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 0}},
    ]  # fmt: skip
    await kube.resource(DeviceProfile, namespace).create(
        {
            "apiVersion": API_VERSION,
            "kind": "DeviceProfile",
            "metadata": {"name": PROFILE},
            "spec": {"nodePool": POOL, "deviceResources": resources},
        }
    )
    for path in (f"/api/v3/deviceservice/name/{SERVICE}", f"/api/v3/deviceprofile/name/{PROFILE}"):
        # The service and profile are in EdgeX first: what follows times the devices only.
        exists: Any = functools.partial(_exists, http, path)
        await async_wait_for(exists, within=60, interval=0.05)
    before = await _controller_counters(proc)

    devices = kube.resource(Device, namespace)
    informer = Informer(devices)
    watching = asyncio.create_task(informer.run())
    await informer.wait_synced()
    semaphore = asyncio.Semaphore(args.concurrency)

    async def create(i: int) -> None:
        async with semaphore:
            await devices.create(_device(i))

    started = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(args.devices)))
    created = time.monotonic() - started
    in_edgex = synced = None
    while in_edgex is None or synced is None:
        now = time.monotonic() - started
        if in_edgex is None and await _edgex_devices(http) >= args.devices:
            in_edgex = now
        if (
            synced is None
            and sum(1 for d in informer.store.list() if (d.get("status") or {}).get("synced")) >= args.devices
        ):
            synced = now
        if now > args.timeout:
            raise TimeoutError(f"not done after {args.timeout} s: in EdgeX {in_edgex}, synced {synced}")
        await asyncio.sleep(0.1)
    watching.cancel()
    after = await _controller_counters(proc)
    requests = {k: v - before["requests"].get(k, 0) for k, v in after["requests"].items()}
    return {
        "devices": args.devices,
        "workers": args.workers,
        "crs_created_s": round(created, 2),
        "all_in_edgex_s": round(in_edgex, 2),
        "all_synced_s": round(synced, 2),
        "devices_per_s": round(args.devices / synced, 1),
        "api_requests_per_device": round(sum(requests.values()) / args.devices, 2),
        "api_requests_by_kind": requests,
        "controller_rss_mib": round(after["rss_kib"] / 1024, 1),
        "controller_peak_rss_mib": round(after["peak_rss_kib"] / 1024, 1),
    }


async def _edgex_devices(http: httpx.AsyncClient) -> int:
    """How many devices EdgeX holds (one object read: the count comes with the first page)."""
    response = await http.get("/api/v3/device/all", params={"limit": 1})
    response.raise_for_status()
    return int(response.json().get("totalCount", 0))


async def _exists(http: httpx.AsyncClient, path: str) -> bool:
    return (await http.get(path)).status_code == 200


async def _controller_counters(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    proc.send_signal(signal.SIGUSR1)
    return json.loads(await asyncio.to_thread(proc.stdout.readline))  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    run = sub.add_parser("controller", help="(internal) the controller process")
    run.add_argument("--kubeconfig", required=True)
    run.add_argument("--namespace", required=True)
    run.add_argument("--metadata-url", required=True)
    run.add_argument("--mqtt", required=True, help="host:port of EdgeX's message bus")
    run.add_argument("--workers", type=int, default=4)
    parser.add_argument("--devices", type=int, default=1000, help="Device CRs created at once (1000, 10000)")
    parser.add_argument("--workers", type=int, default=4, help="reconcile workers per kind in the controller")
    parser.add_argument("--concurrency", type=int, default=32, help="CR creates in flight")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    args = parser.parse_args()
    if args.mode == "controller":
        asyncio.run(controller(args))
        return
    result = bench(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

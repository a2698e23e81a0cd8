"""Processes for system tests: the gateway and the simulator as subprocesses, and a persistent subscriber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from yurt_iot.testing.ports import stable_free_port


class Simulator:
    """`python -m yurt_iot.sim.modbus` in a subprocess."""

    def __init__(self, units: str, size: int = 50) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yurt_iot.sim.modbus", "--units", units, "--size", str(size)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class GatewayProcess:
    """`yurt-iot gateway` in a subprocess, with its /metrics scraped over HTTP."""

    def __init__(self, manifests: Path, spool_dir: Path, mqtt_port: int, log: Path) -> None:
        self.ops_port = stable_free_port()
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yurt_iot.cli", "gateway", "--manifests", str(manifests),
             "--mqtt-port", str(mqtt_port), "--spool-dir", str(spool_dir), "--ops-port", str(self.ops_port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def events_by_device(self) -> dict[str, int]:
        return {
            dict(labels)["device"]: int(value)
            for (name, labels), value in self.metrics().items()
            if name == "yurt_iot_events_total"
        }

    def spool_depth(self) -> float:
        return self.metrics()[("yurt_iot_spool_depth", ())]

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self._log.close()


class Subscriber:
    """A QoS 1 subscriber with a persistent session, so that the broker keeps its messages across restarts."""

    def __init__(self, port: int, topic: str = "edgex/events/device/#") -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        event = json.loads(message.payload)
        with self._lock:
            self.received.append(event)

    def unique_by_device(self) -> dict[str, list[dict[str, Any]]]:
        """Each device's events in arrival order, re-sends (same event id) dropped."""
        seen: set[str] = set()
        by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with self._lock:
            events = list(self.received)
        for event in events:
            if event["id"] not in seen:
                seen.add(event["id"])
                by_device[event["deviceName"]].append(event)
        return by_device

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_manifests(directory: Path, sim_port: int, devices: int, period: str) -> list[str]:
    """A profile with two input registers read by one command, and `devices` devices on unit ids 1..N."""
    names = [f"dev-{unit}" for unit in range(1, devices + 1)]
    resources = [
        {"name": f"r{i}", "description": "counter", "isHidden": False,
         "properties": {"valueType": "Uint16", "readWrite": "R"},
         "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": i}}
        for i in range(2)
    ]  # fmt: skip
    docs: list[dict[str, Any]] = [{
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "DeviceProfile", "metadata": {"name": "counter"},
        "spec": {"deviceResources": resources, "deviceCommands": [{
            "name": "Pair", "isHidden": False, "readWrite": "R",
            "resourceOperations": [{"deviceResource": r["name"], "defaultValue": ""} for r in resources]}]},
    }]  # fmt: skip
    for unit, name in enumerate(names, start=1):
        docs.append({
            "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "Device", "metadata": {"name": name},
            "spec": {"serviceName": "device-modbus", "profileName": "counter", "notify": False,
                     "protocols": {"modbus-tcp": {"Address": "127.0.0.1", "Port": str(sim_port), "UnitID": str(unit),
                                                  "Timeout": "500ms"}},
                     "autoEvents": [{"sourceName": "Pair", "interval": period}]},
        })  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "devices.yaml").write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    return names

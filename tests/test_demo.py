"""`yurt-iot demo` in a pseudo-terminal, as a new user runs it: live readings from all three protocols, a clean
exit after --duration or Ctrl-C with no process left behind, with mosquitto or the built-in broker, and a clear
message when a port is taken."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from tests.kube_helpers import kubectl, new_namespace
from tests.test_demo_broker import Client
from yurt_iot.api.iot import Device
from yurt_iot.demo.children import check_port_free, find_mosquitto
from yurt_iot.demo.plan import plan
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX
from yurt_iot.runtime.publisher import EVENT_ID_PROPERTY
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.ports import LOOPBACK, stable_free_port
from yurt_iot.testing.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "iot"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROWS = {"thermostat-1": "modbus-tcp", "opcua-machine-1": "opcua", "mqtt-sensor-1": "mqtt"}


class Terminal:
    """A command on a 160-column pseudo-terminal, in its own process group (as a shell runs a foreground job)."""

    def __init__(self, *args: str, prefix: Sequence[str] = ()) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
        self.proc = subprocess.Popen([*prefix, "yurt-iot", *args], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)  # fmt: skip
        os.close(slave)
        self.output = b""
        self.descendants: set[int] = set()

    def read(self, timeout: float = 0.2) -> str:
        """Everything printed so far, escape sequences removed; also notes the command's descendants."""
        self.descendants |= _descendants(self.proc.pid)
        while select.select([self.master], [], [], timeout)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            self.output += chunk
            timeout = 0
        return ANSI.sub("", self.output.decode(errors="replace"))

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        self.read(0)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _rows_with_readings(screen: str) -> dict[str, str]:
    """Device -> its latest table row, for the rows that show the device UP with readings and values."""
    rows = {}
    for line in screen.splitlines():
        cells = line.split()
        shown = len(cells) >= 6 and cells[0] in ROWS and cells[1] == ROWS[cells[0]] and cells[2] == "UP"
        if shown and cells[3].isdigit() and int(cells[3]) > 0 and "=" in line:
            rows[cells[0]] = line
    return rows


def test_the_demo_shows_live_readings_of_all_three_protocols_and_exits_cleanly() -> None:
    terminal = Terminal("demo", "--duration", "8")
    try:
        code = terminal.wait(timeout=60)
        screen = terminal.read(0)
    finally:
        terminal.close()
    assert code == 0, screen
    rows = _rows_with_readings(screen)
    assert set(rows) == set(ROWS), screen
    assert "Temperature=" in rows["thermostat-1"] and "Humidity=" in rows["thermostat-1"]
    assert "Cycles=" in rows["opcua-machine-1"] and "temperature=" in rows["mqtt-sensor-1"]
    assert "demo stopped" in screen
    assert terminal.descendants, "the demo started no processes"
    assert not [pid for pid in terminal.descendants if _alive(pid)]


def _manifests_on_free_ports(directory: Path) -> dict[str, int]:
    ports = {name: stable_free_port() for name in ("modbus", "opcua", "mqtt", "ops")}
    directory.mkdir()
    for path in EXAMPLES.glob("*.yaml"):
        text = path.read_text().replace('Port: "1502"', f'Port: "{ports["modbus"]}"')
        text = text.replace("127.0.0.1:4840", f"127.0.0.1:{ports['opcua']}").replace(":1883", f":{ports['mqtt']}")
        (directory / path.name).write_text(text)
    return ports


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = _manifests_on_free_ports(tmp_path / "manifests")
    terminal = Terminal("demo", "--manifests", str(tmp_path / "manifests"),
                        "--mqtt-port", str(ports["mqtt"]), "--ops-port", str(ports["ops"]))  # fmt: skip
    try:
        wait_for(lambda: len(_rows_with_readings(terminal.read())) == 3, timeout=40, what="readings of 3 devices")
        os.killpg(terminal.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        code = terminal.wait(timeout=30)
        screen = terminal.read(0)
    finally:
        terminal.close()
    assert code == 0, screen
    assert "demo stopped" in screen and "WARNING" not in screen and "ERROR" not in screen
    assert not [pid for pid in terminal.descendants if _alive(pid)]


@pytest.mark.parametrize(
    ("sent", "args"),
    [
        pytest.param(signal.SIGHUP, (), id="terminal-closed"),
        # Mosquitto is started off the main thread, where Linux's parent-death signal cannot be tied to the demo.
        pytest.param(signal.SIGKILL, ("--broker", "builtin"), id="killed"),
    ],
)
def test_a_closed_terminal_or_a_killed_demo_leaves_no_process_and_no_port_behind(
    tmp_path: Path, sent: signal.Signals, args: tuple[str, ...]
) -> None:
    """Else the next `yurt-iot demo` finds 1883, 1502 and 4840 taken by the last one's orphans."""
    ports = _manifests_on_free_ports(tmp_path / "manifests")
    terminal = Terminal("demo", *args, "--manifests", str(tmp_path / "manifests"),
                        "--mqtt-port", str(ports["mqtt"]), "--ops-port", str(ports["ops"]))  # fmt: skip
    try:
        wait_for(lambda: len(_rows_with_readings(terminal.read())) == 3, timeout=40, what="readings of 3 devices")
        assert len(terminal.descendants) >= 4, "a broker and three simulators"
        terminal.proc.send_signal(sent)
        code = terminal.wait(timeout=30)
        wait_for(lambda: not [pid for pid in terminal.descendants if _alive(pid)], timeout=15,
                 what="every process of the demo to end")  # fmt: skip
        screen = terminal.read(0)
    finally:
        terminal.close()
    assert code == (-signal.SIGKILL if sent == signal.SIGKILL else 0), screen
    for name, port in ports.items():
        check_port_free(port, name)  # as the next demo checks them


def _can_hide_files() -> bool:
    """Whether this machine lets us bind-mount in a private mount namespace (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "mount", "--bind", "/dev/null", "/dev/null"], capture_output=True)
    return probe.returncode == 0


def _without_mosquitto() -> tuple[str, ...]:
    """A command prefix that hides the installed mosquitto from the command, as on a machine without it: /dev/null
    bind-mounted over it in a private mount namespace (root only, as scripts/test and CI run)."""
    mosquitto = find_mosquitto()
    hide = f'mount --bind /dev/null {mosquitto} && exec "$@"'
    return () if mosquitto is None else ("unshare", "--mount", "sh", "-c", hide, "sh")


@pytest.mark.parametrize(
    ("args", "prefix", "started"),
    [
        pytest.param(("--broker", "builtin"), (), "MQTT broker (built-in) on", id="forced"),
        pytest.param(
            (), _without_mosquitto(), "MQTT broker (built-in, mosquitto not installed) on", id="no-mosquitto",
            marks=pytest.mark.skipif(not _can_hide_files(), reason="needs a private mount namespace (root, unshare)"),
        ),
    ],
)  # fmt: skip
def test_without_mosquitto_the_built_in_broker_carries_the_devices_and_the_telemetry(
    tmp_path: Path, args: tuple[str, ...], prefix: tuple[str, ...], started: str
) -> None:
    """What a machine without mosquitto gets: the same table, and the gateway's MQTT 5 telemetry (with its
    event-id property) on the built-in broker, next to the MQTT 3.1.1 device."""
    ports = _manifests_on_free_ports(tmp_path / "manifests")
    terminal = Terminal("demo", *args, "--duration", "10", "--manifests", str(tmp_path / "manifests"),
                        "--mqtt-port", str(ports["mqtt"]), "--ops-port", str(ports["ops"]), prefix=prefix)  # fmt: skip
    try:
        line = f"{started} 127.0.0.1:{ports['mqtt']}"
        wait_for(lambda: line in terminal.read(), timeout=30, what="the built-in broker")
        telemetry = Client(ports["mqtt"], mqtt.MQTTv5)
        try:
            telemetry.subscribe(f"{DEFAULT_TOPIC_PREFIX}/#")
            wait_for(lambda: terminal.read() and not telemetry.messages.empty(), timeout=30, what="telemetry")
            event = telemetry.messages.get_nowait()
        finally:
            telemetry.close()
        code = terminal.wait(timeout=60)
        screen = terminal.read(0)
    finally:
        terminal.close()
    assert code == 0, screen
    assert set(_rows_with_readings(screen)) == set(ROWS), screen
    assert "demo stopped" in screen and "WARNING" not in screen and "ERROR" not in screen
    assert [name for name, _ in event.properties.UserProperty] == [EVENT_ID_PROPERTY]
    assert not [pid for pid in terminal.descendants if _alive(pid)]


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    ports = _manifests_on_free_ports(tmp_path / "manifests")
    with socket.socket() as taken:
        taken.bind((LOOPBACK, ports["opcua"]))
        taken.listen()
        result = subprocess.run(
            ["yurt-iot", "demo", "--manifests", str(tmp_path / "manifests"), "--duration", "5",
             "--mqtt-port", str(ports["mqtt"]), "--ops-port", str(ports["ops"])],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {ports['opcua']} (OPC-UA simulator of opcua-machine-1) is in use" in result.stderr


def test_the_plan_follows_the_manifests() -> None:
    """One Modbus simulator per endpoint with every unit id on it, one broker per port, and devices that cannot
    be simulated named rather than guessed at."""

    def device(name: str, protocol: str, properties: dict[str, str]) -> Device:
        spec = {"serviceName": "s", "profileName": "p", "notify": False, "protocols": {protocol: properties}}
        return Device.model_validate({"metadata": {"name": name}, "spec": spec})

    result = plan([
        device("a", "modbus-tcp", {"Address": "127.0.0.1", "Port": "1502", "UnitID": "2"}),
        device("b", "modbus-tcp", {"Address": "localhost", "Port": "1502", "UnitID": "1"}),
        device("c", "mqtt", {"Broker": "tcp://127.0.0.1:1884", "CommandTopic": "cmd/c"}),
        device("d", "modbus-tcp", {"Address": "10.1.2.3", "Port": "502"}),
        device("e", "bacnet", {}),
    ], telemetry_broker=1883)  # fmt: skip

    assert result.brokers == {1883, 1884}
    modbus = [s for s in result.simulators if "yurt_iot.sim.modbus" in s.argv]
    assert [(s.port, s.argv[-1]) for s in modbus] == [(1502, "1,2")]
    [mqtt] = [s for s in result.simulators if "yurt_iot.sim.mqtt" in s.argv]
    assert mqtt.port == 1884 and not mqtt.listens and "cmd/c" in mqtt.argv
    assert result.unsimulated == [
        "d is at 10.1.2.3; the demo simulates devices on 127.0.0.1 only",
        "e: no simulator for protocol bacnet",
    ]


def test_kube_applies_the_examples_to_the_cluster_instead(control_plane: ControlPlane, tmp_path: Path) -> None:
    namespace = new_namespace(control_plane, "demo")
    command = ["yurt-iot", "demo", "--kube", "--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace]
    for _ in range(2):  # applying again updates in place
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert f"device.iot.openyurt.io/thermostat-1 applied in namespace {namespace}" in result.stdout
    names = kubectl(control_plane, "get", "devices", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == [f"device.iot.openyurt.io/{n}" for n in sorted(ROWS)]

    unreachable = tmp_path / "kubeconfig"
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{stable_free_port()}"
    unreachable.write_text(yaml.safe_dump(config))
    result = subprocess.run([*command[:4], str(unreachable), *command[5:]], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1
    assert f"not applied in namespace {namespace}" in result.stderr

"""The device-runtime benchmark: ``python bench/telemetry.py``, and where the gateway's time goes.

What runs, all on 127.0.0.1: a Mosquitto broker; Modbus simulator processes (``python -m yurt_iot.sim.modbus``);
``yurt-iot gateway`` as a subprocess (``python -m yurt_iot.cli gateway``, so that its CPU and memory can be read
from /proc/<pid>); and a QoS 1 subscriber in a process of its own (not sharing the GIL with this script) that
counts readings and events and measures each reading's latency: its arrival (wall clock) minus its ``origin``.

Each trial writes manifests (N devices x M adjacent Uint16 input registers, one deviceCommand reading all M, an
autoEvent at the period), starts the subscriber and the gateway, waits out a warm-up and then measures over a
window: readings/s and events/s delivered to the subscriber, device polls/s, the gateway's CPU-seconds per 1000
readings delivered (utime+stime from /proc/<pid>/stat), latency p50/p99, VmRSS/VmHWM, and the gateway's own
counters from /metrics (late polls, errors, spool depth) to show whether it kept up.

The default run (``python bench/telemetry.py``, about 4 minutes) covers the product targets:

  (a) max readings/s delivered (>= 150,000): 100 devices x 125 registers, periods stepped down until the gateway
      no longer keeps up; the best sustained one counts.
  (b) device polls/s with 50 registers per device (>= 1,000): 100 devices x 50 registers, stepped the same way.
  (c) at 10,000 readings/s (100 devices x 50 registers every 500 ms): CPU-seconds per 1000 readings (<= 0.008),
      latency p50 <= 5 ms and p99 <= 20 ms.
  (d) RSS with 100 devices (<= 60 MB): the highest VmHWM of the gateway over the 100-device trials above.

(c) is also run as what-ifs, which are not the product and do not count for the targets: ``aligned`` (every
device polls at the same instant, as before the product spread poll phases), ``phases/10`` (phases rounded to
10 groups: smaller bursts), and with 25 devices behind each simulator port (``shared``, as behind a serial
gateway) instead of a port per device. See bench/instrumented_gateway.py.

and runs ``bench/baseline_naive.py`` (a straightforward pymodbus + paho gateway, one publish per reading) on the
loads of (c) and (b), in two variants, printing its figures side by side with ours and the ratio ours/baseline.

The other built-in drivers, without targets (``--scenario opcua|mqtt``, or ``protocols`` for both; not in the
default run), stepped the same way:

  opcua: 20 devices x 50 Int32 nodes, one batched Read per poll, each device a session of its own on asyncua
         simulator processes (yurt_iot.sim.opcua, 5 sessions each: the server is pure Python and costs more CPU
         than the gateway).
  mqtt:  100 EdgeX device-mqtt devices (bench/mqtt_devices.py), each pushing a JSON object of 10 Float64 values
         through the broker; "polls" are the pushed messages taken as events. Their readings' origin is when the
         gateway received the push, so latency is the gateway and broker's share only.

``--scenario a|b|c|baseline`` runs one part; ``--devices/--registers/--period/--duration/--topology`` override
the load (``--period`` pins one period instead of stepping); ``--phases`` runs our gateway with what-if phases.
``--profile`` runs the gateway on one load (default: that of (c); ``--scenario a|b`` and the overrides choose
another) under cProfile, switched on for the measuring window only (bench/instrumented_gateway.py), then under
py-spy if it is installed, and summarises where the time goes. ``--memory`` lists the gateway's live
allocations (tracemalloc) by file and line.

A trial "keeps up" when device polls/s and readings/s delivered are within 3% of the load, no poll failed and
the spool holds less than a second of events at the end. Every process started here is stopped on exit,
also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pstats
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOPIC_FILTER = "edgex/events/device/#"
PROFILE_NAME = "bench"
# A deep queue for the subscriber, and by default no inflight limit: Mosquitto's default of 20 would also be the
# Receive Maximum in its CONNACK, which caps the gateway's publish window at 20 (--broker-inflight 20 to see).
BROKER_CONFIG = "max_queued_messages 10000000\nmax_inflight_messages {inflight}\n"
UNITS_PER_PROCESS = 25  # Modbus devices per simulator process, and MQTT devices per bench/mqtt_devices.py
SIM_TABLE_SIZE = 256
OPCUA_SESSIONS_PER_SERVER = 5  # OPC-UA devices per simulator process (asyncua's server is pure Python)
QUIET = 0.25  # cores the rest of the machine may use when a trial starts (wait_quiet)
STOP_TIMEOUT = 5.0  # seconds a gateway gets to exit on SIGTERM before SIGKILL
KEEP_UP = 0.97  # delivered / offered, polls and readings
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never via a proxy


class BenchError(RuntimeError):
    """A process did not start or answer as expected."""


# --------------------------------------------------------------------------------------------------------------
# processes


class Processes:
    """Every process the benchmark starts; `close` stops them all (SIGTERM, then SIGKILL), newest first."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        # A session of its own: a Ctrl-C in the terminal reaches this script only, which then stops the rest in
        # order; and SIGTERM to the child should this script die without cleaning up (even by SIGKILL).
        from yurt_iot.sim.process import die_with_parent

        proc: subprocess.Popen[Any] = subprocess.Popen(
            list(argv), cwd=REPO, start_new_session=True, preexec_fn=die_with_parent, **kwargs
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)
        return proc.returncode

    def close(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, timeout=5.0)


def read_line(proc: subprocess.Popen[Any], timeout: float, what: str) -> str:
    """The next line `proc` prints (its stdout is a text pipe the child writes whole lines to)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"{what}: no answer within {timeout:.0f} s")
    line: str = proc.stdout.readline()
    if not line:
        raise BenchError(f"{what} exited with code {proc.wait(5)}")
    return line.strip()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15; the list starts at field 3


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB (10**6 bytes), from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values["VmRSS"], values["VmHWM"]


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with _NO_PROXY.open(f"http://{LOOPBACK}:{port}{path}", timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), ""


def scrape(port: int) -> dict[str, float]:
    """The gateway's /metrics, each sample name summed over its labels (devices)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(port, "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)


def free_port() -> int:
    from yurt_iot.testing.ports import free_port as _free_port

    return _free_port(LOOPBACK)


# --------------------------------------------------------------------------------------------------------------
# the pieces of a trial


@dataclass(frozen=True)
class Load:
    """N devices x M values (Modbus registers, OPC-UA nodes, pushed MQTT values) every `period` seconds."""

    devices: int
    registers: int
    period: float
    topology: str = "per-device"
    protocol: str = "modbus"  # modbus, opcua or mqtt

    @property
    def readings_per_s(self) -> float:
        return self.devices * self.registers / self.period

    @property
    def polls_per_s(self) -> float:
        return self.devices / self.period

    def __str__(self) -> str:
        shared = " shared" if self.topology == "shared" else ""
        protocol = "" if self.protocol == "modbus" else f"{self.protocol} "
        return f"{protocol}{self.devices}x{self.registers} @{self.period * 1000:g}ms{shared}"


class Environment:
    """The broker and simulators shared by the trials of a run, and a temporary directory."""

    def __init__(self, procs: Processes, broker_inflight: int = 0) -> None:
        from yurt_iot.testing.mosquitto import Mosquitto

        self.procs = procs
        self.dir = Path(tempfile.mkdtemp(prefix="yurt-iot-bench-"))
        self.broker = Mosquitto(extra_config=BROKER_CONFIG.format(inflight=broker_inflight))
        self.broker.start()
        self._sims: list[subprocess.Popen[Any]] = []
        self._answers: list[str] = []  # the line each simulator process printed when it was ready
        self._sim_kind = ""
        self._trials = 0

    def close(self) -> None:
        """Stop every process and remove the temporary files; a second Ctrl-C waits until that is done."""
        signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            self.procs.close()
        finally:
            try:
                self.broker.close()
                shutil.rmtree(self.dir, ignore_errors=True)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    @property
    def broker_pid(self) -> int | None:
        return self.broker.pid

    @property
    def sim_pids(self) -> list[int]:
        return [p.pid for p in self._sims]

    def devices(self, load: Load) -> list[tuple[str, dict[str, dict[str, str]]]]:
        """Each device's name and spec.protocols, starting (or switching to) the simulators that `load` needs."""
        if load.protocol == "opcua":
            return self._opcua_devices(load)
        if load.protocol == "mqtt":
            return self._mqtt_devices(load)
        return [
            (name, {"modbus-tcp": {"Address": LOOPBACK, "Port": str(port), "UnitID": str(unit), "Timeout": "1s"}})
            for name, port, unit in self.endpoints(load.devices, load.topology)
        ]

    def endpoints(self, devices: int, topology: str) -> list[tuple[str, int, int]]:
        """(name, port, unit) of each Modbus device, starting (or switching to) the simulators of `topology`.

        per-device: every device a Modbus TCP server of its own (a port each, one unit), as PLCs and meters with
        their own address are. shared: UNITS_PER_PROCESS units behind each port, as behind a serial-to-Ethernet
        gateway: the gateway has one connection per port, and those devices' requests queue on it.
        Either way the simulators run in ceil(devices / UNITS_PER_PROCESS) processes.
        """
        per_port = (UNITS_PER_PROCESS, 1) if topology == "per-device" else (1, UNITS_PER_PROCESS)
        argv = [sys.executable, str(BENCH / "sim_cluster.py"), "--endpoints", str(per_port[0]),
                "--units", str(per_port[1]), "--size", str(SIM_TABLE_SIZE)]  # fmt: skip
        answers = self._simulators(topology, math.ceil(devices / UNITS_PER_PROCESS), argv, "Modbus simulators")
        processes: list[list[int]] = [json.loads(answer) for answer in answers]
        if topology == "per-device":
            ports = [port for ports in processes for port in ports]
            return [(f"dev-{i:03d}", ports[i], 1) for i in range(devices)]
        ports = [ports[0] for ports in processes]  # round robin, so that each simulator serves a share
        return [(f"dev-{i:03d}", ports[i % len(ports)], i // len(ports) + 1) for i in range(devices)]

    def _opcua_devices(self, load: Load) -> list[tuple[str, dict[str, dict[str, str]]]]:
        """OPC-UA devices, each with a session of its own, OPCUA_SESSIONS_PER_SERVER of them on a simulator process.

        A gateway shares one session among the devices of one Endpoint; machines each have a server of their own,
        hence a session each. A simulator process per device would cost a Python process each, so every device gets
        an Endpoint of its own by its path (``opc.tcp://127.0.0.1:<port>/dev-007``), which the server ignores. All
        read the same M Int32 nodes (``ns=2;i=10000``...), as machines of one model have the same node ids.
        """
        # --update-period 0: the values stay put, and the simulators spend no CPU on ticks.
        argv = [sys.executable, "-m", "yurt_iot.sim.opcua", "--extra-nodes", str(load.registers),
                "--update-period", "0"]  # fmt: skip
        processes = math.ceil(load.devices / OPCUA_SESSIONS_PER_SERVER)
        urls = self._simulators(f"opcua {load.registers}", processes, argv, "OPC-UA simulators")
        return [
            (name, {"opcua": {"Endpoint": f"{urls[i % len(urls)].rstrip('/')}/{name}", "Timeout": "1s"}})
            for i, name in enumerate(f"dev-{i:03d}" for i in range(load.devices))
        ]

    def _mqtt_devices(self, load: Load) -> list[tuple[str, dict[str, dict[str, str]]]]:
        """MQTT devices pushing every period through the broker (bench/mqtt_devices.py), UNITS_PER_PROCESS a process.

        They push from the start, to no one until the gateway subscribes (QoS 0, as EdgeX's devices do), so a new
        load (devices, values, period) means new processes.
        """
        processes = math.ceil(load.devices / UNITS_PER_PROCESS)
        per_process = math.ceil(load.devices / processes)

        def argv(index: int) -> list[str]:
            first = index * per_process
            return [sys.executable, str(BENCH / "mqtt_devices.py"), "--broker-port", str(self.broker.port),
                    "--first", str(first), "--devices", str(min(per_process, load.devices - first)),
                    "--values", str(load.registers), "--period", str(load.period)]  # fmt: skip

        self._simulators(f"mqtt {load}", processes, argv, "MQTT devices", reuse=False)
        broker = {"Broker": f"tcp://{LOOPBACK}:{self.broker.port}"}
        return [(name, {"mqtt": {**broker, "CommandTopic": f"command/{name}"}})
                for name in (f"dev-{i:03d}" for i in range(load.devices))]  # fmt: skip

    def _simulators(
        self,
        kind: str,
        processes: int,
        argv: Sequence[str] | Callable[[int], Sequence[str]],
        what: str,
        reuse: bool = True,
    ) -> list[str]:
        """The ready lines of the simulator processes of `kind`, started unless (with `reuse`) enough are running.

        `argv` is the command line, or a function of the process's index giving it. A process that fails to start
        (say, a port taken meanwhile) is tried again.
        """
        if self._sim_kind == kind and (len(self._sims) == processes or (reuse and len(self._sims) > processes)):
            return self._answers
        for proc in self._sims:
            self.procs.stop(proc)
        self._sims, self._answers, self._sim_kind = [], [], kind
        for index in range(processes):
            command = argv(index) if callable(argv) else argv
            log_path = self.dir / f"sim-{''.join(c if c.isalnum() else '-' for c in kind)}-{index}.log"
            proc, answer = self._simulator_process(log_path, command, what)
            self._sims.append(proc)
            self._answers.append(answer)
        return self._answers

    def _simulator_process(self, log_path: Path, argv: Sequence[str], what: str) -> tuple[subprocess.Popen[Any], str]:
        """One simulator process and the line it printed when ready; tried again if it fails (say, a port taken)."""
        for attempt in range(3):
            with log_path.open("ab") as log:
                proc = self.procs.spawn(argv, stdout=subprocess.PIPE, stderr=log, text=True)
            try:
                return proc, read_line(proc, 60, what)
            except BenchError:
                self.procs.stop(proc)
                if attempt == 2:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                    raise BenchError(f"{what} did not start:\n{tail}") from None
        raise AssertionError("unreachable")

    def trial_dir(self, label: str) -> Path:
        self._trials += 1
        path = self.dir / f"{self._trials:02d}-{''.join(c if c.isalnum() else '-' for c in label)}"
        path.mkdir()
        return path


def _resources(load: Load) -> list[dict[str, Any]]:
    """M adjacent Uint16 input registers, M Int32 OPC-UA nodes, or the M Float64 values an MQTT device pushes."""
    from mqtt_devices import resource_names as mqtt_resource_names  # bench/, beside this file

    from yurt_iot.sim.opcua import extra_node

    if load.protocol == "opcua":
        return [{"name": f"n{i:03d}", "description": f"node {i}", "isHidden": False,
                 "properties": {"valueType": "Int32", "readWrite": "R"}, "attributes": {"nodeId": extra_node(i)}}
                for i in range(load.registers)]  # fmt: skip
    if load.protocol == "mqtt":
        return [{"name": name, "description": f"pushed value {name}", "isHidden": False,
                 "properties": {"valueType": "Float64", "readWrite": "R"}}
                for name in mqtt_resource_names(load.registers)]  # fmt: skip
    return [{"name": f"r{i:03d}", "description": f"input register {i}", "isHidden": False,
             "properties": {"valueType": "Uint16", "readWrite": "R"},
             "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": i}}
            for i in range(load.registers)]  # fmt: skip


def write_manifests(path: Path, load: Load, devices: Sequence[tuple[str, dict[str, dict[str, str]]]]) -> None:
    """One profile of the load's M values and a command reading all, and the devices: polled by an autoEvent of
    that command at the period, except MQTT devices, which push."""
    resources = _resources(load)
    docs: list[dict[str, Any]] = [{
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "DeviceProfile", "metadata": {"name": PROFILE_NAME},
        "spec": {"deviceResources": resources, "deviceCommands": [{
            "name": "All", "isHidden": False, "readWrite": "R",
            "resourceOperations": [{"deviceResource": r["name"], "defaultValue": ""} for r in resources]}]},
    }]  # fmt: skip
    polled = [] if load.protocol == "mqtt" else [{"sourceName": "All", "interval": f"{load.period * 1000:g}ms"}]
    for name, protocols in devices:
        docs.append({
            "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "Device", "metadata": {"name": name},
            "spec": {"serviceName": f"device-{load.protocol}", "profileName": PROFILE_NAME, "notify": False,
                     "protocols": protocols, "autoEvents": polled},
        })  # fmt: skip
    path.write_text("---\n".join(json.dumps(doc) + "\n" for doc in docs))  # JSON is YAML


class Subscriber:
    """The QoS 1 subscriber process (this file with --subscriber): start/stop a window, get its figures."""

    def __init__(self, env: Environment, log: Path) -> None:
        with log.open("ab") as stderr:
            self.proc = env.procs.spawn(
                [sys.executable, __file__, "--subscriber", str(env.broker.port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
        self._procs = env.procs
        if read_line(self.proc, 20, "subscriber") != "ready":
            raise BenchError("subscriber did not subscribe")

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def start(self) -> None:
        self._send("start")

    def stop(self) -> dict[str, Any]:
        self._send("stop")
        stats: dict[str, Any] = json.loads(read_line(self.proc, 60, "subscriber"))
        return stats

    def peek(self) -> dict[str, Any]:
        """The figures of the window so far, which stays open."""
        self._send("peek")
        stats: dict[str, Any] = json.loads(read_line(self.proc, 60, "subscriber"))
        return stats

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send("quit")
        self._procs.stop(self.proc)


def phases_kind(phases: str | None) -> str:
    """Ours, or ours with what-if poll phases (bench/instrumented_gateway.py --phases)."""
    if phases is None:
        return "yurt-iot"
    return "yurt-iot aligned" if phases == "aligned" else f"yurt-iot phases/{phases}"


class Gateway:
    """`yurt-iot gateway` (ours) in a subprocess, through bench/instrumented_gateway.py when instrumented."""

    def __init__(
        self,
        env: Environment,
        directory: Path,
        load: Load,
        *,
        phases: str | None = None,
        profile_to: Path | None = None,
        tracemalloc_to: Path | None = None,
        mqtt_port: int | None = None,
    ) -> None:
        """`mqtt_port`: where the gateway publishes, if not straight to the broker (bench/outage.py's relay)."""
        self.kind = phases_kind(phases)
        manifests = directory / "manifests.yaml"
        write_manifests(manifests, load, env.devices(load))
        self.ops_port = free_port()
        self.log = directory / "gateway.log"
        options = [] if phases is None else ["--phases", phases]
        options += ["--profile", str(profile_to)] if profile_to else []
        options += ["--tracemalloc", str(tracemalloc_to)] if tracemalloc_to else []
        prefix = [str(BENCH / "instrumented_gateway.py"), *options] if options else ["-m", "yurt_iot.cli"]
        with self.log.open("ab") as log:
            self.proc = env.procs.spawn(
                [sys.executable, *prefix, "gateway", "--manifests", str(manifests), "--mqtt-host", LOOPBACK,
                 "--mqtt-port", str(mqtt_port or env.broker.port), "--spool-dir", str(directory / "spool"),
                 "--ops-host", LOOPBACK, "--ops-port", str(self.ops_port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        self._procs = env.procs
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"gateway exited with code {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(self.ops_port, "/readyz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"gateway not ready within 60 s:\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def counters(self) -> dict[str, float]:
        m = scrape(self.ops_port)
        return {
            "polls": m.get("yurt_iot_poll_duration_seconds_count", 0.0),
            "poll_seconds": m.get("yurt_iot_poll_duration_seconds_sum", 0.0),
            "requests": m.get("yurt_iot_device_requests_total", 0.0),
            "readings": m.get("yurt_iot_readings_total", 0.0),
            "events": m.get("yurt_iot_events_total", 0.0),
            "late": m.get("yurt_iot_late_polls_total", 0.0),
            "errors": m.get("yurt_iot_poll_errors_total", 0.0),
            "rejected": m.get("yurt_iot_events_rejected_total", 0.0) + m.get("yurt_iot_spool_rejected_total", 0.0),
            "spool_depth": m.get("yurt_iot_spool_depth", 0.0),
            "acked": m.get("yurt_iot_mqtt_acked_total", 0.0),
            "mqtt_reconnects": m.get("yurt_iot_mqtt_reconnects_total", 0.0),
        }

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def warnings(self) -> int:
        with contextlib.suppress(OSError):
            return sum(" WARNING " in line or " ERROR " in line for line in self.log.read_text().splitlines())
        return 0

    def close(self) -> str:
        """Stop it (SIGTERM); how it ended: "ok", or "hung" when it had to be killed after STOP_TIMEOUT."""
        started = time.monotonic()
        code = self._procs.stop(self.proc, timeout=STOP_TIMEOUT)
        if code == -signal.SIGKILL and time.monotonic() - started >= STOP_TIMEOUT:
            return "hung"
        return "ok" if code in (0, -signal.SIGTERM) else f"exit {code}"


class Baseline:
    """bench/baseline_naive.py in a subprocess; its counters come as a JSON line on SIGUSR1."""

    def __init__(self, env: Environment, directory: Path, load: Load, mode: str) -> None:
        self.kind = f"naive {mode}"
        devices = directory / "devices.json"
        devices.write_text(json.dumps(env.endpoints(load.devices, load.topology)))
        self.log = directory / "baseline.log"
        with self.log.open("ab") as log:
            self.proc = env.procs.spawn(
                [sys.executable, str(BENCH / "baseline_naive.py"), "--mqtt-port", str(env.broker.port),
                 "--devices", str(devices), "--registers", str(load.registers), "--period", str(load.period),
                 "--mode", mode],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        self._procs = env.procs
        if read_line(self.proc, 60, "baseline") != "ready":
            raise BenchError("baseline did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def counters(self) -> dict[str, float]:
        self.proc.send_signal(signal.SIGUSR1)
        counters: dict[str, float] = json.loads(read_line(self.proc, 30, "baseline"))
        return counters

    def warnings(self) -> int:
        with contextlib.suppress(OSError):
            return sum(1 for line in self.log.read_text(errors="replace").splitlines() if line.strip())
        return 0

    def close(self) -> str:
        self._procs.stop(self.proc, timeout=STOP_TIMEOUT)
        return "ok"  # SIGTERM's default action: no graceful stop to wait for


# --------------------------------------------------------------------------------------------------------------
# measuring


@dataclass
class Result:
    label: str
    kind: str
    load: Load
    window_s: float
    readings_per_s: float  # delivered to the subscriber
    events_per_s: float  # messages delivered to the subscriber
    polls_per_s: float
    requests_per_s: float
    poll_ms: float  # mean poll duration (the gateway's histogram): queueing for the connection included
    produced_per_s: float  # readings the gateway put into events
    cpu_s: float  # gateway utime+stime over the window
    cpu_per_1k: float  # CPU-seconds per 1000 readings delivered
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: float
    hwm_mb: float
    late: float
    errors: float
    rejected: float
    spool_depth: float
    duplicates: int
    warnings: int
    sub_cpu_pct: float
    sims_cpu_pct: float
    broker_cpu_pct: float
    other_cpu_pct: float  # the rest of the machine: processes that are not part of the benchmark
    kept_up: bool = False
    why: list[str] = field(default_factory=list)
    exit: str = ""  # how the gateway ended on SIGTERM: ok, or hung (killed after STOP_TIMEOUT)

    @property
    def cpu_pct(self) -> float:
        return 100 * self.cpu_s / self.window_s


def _total_cpu(pids: Sequence[int | None]) -> float:
    total = 0.0
    for pid in pids:
        if pid is not None:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs spent busy since boot (/proc/stat: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK  # user..steal, less idle and iowait


def measure(
    env: Environment,
    gateway: Gateway | Baseline,
    subscriber: Subscriber,
    label: str,
    load: Load,
    warmup: float,
    window: float,
    during: Callable[[], None] | None = None,
) -> Result:
    """Warm up, then measure one window; `during` runs at the window's start (e.g. a profiler)."""
    time.sleep(warmup)
    pids: dict[str, list[int | None]] = {
        "gw": [gateway.pid],
        "sub": [subscriber.proc.pid],
        "sims": list(env.sim_pids),
        "broker": [env.broker_pid],
    }
    before = gateway.counters()
    cpu0, machine0, t0 = {k: _total_cpu(v) for k, v in pids.items()}, machine_busy_seconds(), time.monotonic()
    subscriber.start()
    if during is not None:
        during()
    time.sleep(max(0.0, window - (time.monotonic() - t0)))
    sub = subscriber.stop()
    cpu1, machine1, t1 = {k: _total_cpu(v) for k, v in pids.items()}, machine_busy_seconds(), time.monotonic()
    after = gateway.counters()
    rss, hwm = memory_mb(gateway.pid)
    elapsed = t1 - t0
    cpu = {k: cpu1[k] - cpu0[k] for k in pids}
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    if load.protocol == "mqtt":  # nothing is polled: a "poll" is a pushed message the gateway took as an event
        delta["polls"] = delta["events"]
    sub_window = sub["seconds"] or elapsed
    readings = sub["readings"]
    result = Result(
        label=label, kind=gateway.kind, load=load, window_s=elapsed,
        readings_per_s=readings / sub_window, events_per_s=sub["messages"] / sub_window,
        polls_per_s=delta["polls"] / elapsed, requests_per_s=delta["requests"] / elapsed,
        poll_ms=1000 * delta["poll_seconds"] / delta["polls"] if delta.get("poll_seconds") else math.nan,
        produced_per_s=delta["readings"] / elapsed,
        cpu_s=cpu["gw"], cpu_per_1k=cpu["gw"] / (readings / 1000) if readings else math.inf,
        p50_ms=sub["p50_ms"], p99_ms=sub["p99_ms"], max_ms=sub["max_ms"], rss_mb=rss, hwm_mb=hwm,
        late=delta["late"], errors=delta["errors"], rejected=delta.get("rejected", 0.0),
        spool_depth=after.get("spool_depth", 0.0), duplicates=sub["duplicates"], warnings=gateway.warnings(),
        sub_cpu_pct=100 * cpu["sub"] / elapsed, sims_cpu_pct=100 * cpu["sims"] / elapsed,
        broker_cpu_pct=100 * cpu["broker"] / elapsed,
        other_cpu_pct=100 * max(0.0, machine1 - machine0 - sum(cpu.values())) / elapsed,
    )  # fmt: skip
    why = []
    if result.polls_per_s < KEEP_UP * load.polls_per_s:
        why.append(f"polls {result.polls_per_s:,.0f}/s < {load.polls_per_s:,.0f}/s")
    if result.readings_per_s < KEEP_UP * load.readings_per_s:
        why.append(f"delivered {result.readings_per_s:,.0f}/s < {load.readings_per_s:,.0f}/s")
    if result.errors:
        why.append(f"{result.errors:.0f} poll errors")
    if result.rejected:
        why.append(f"{result.rejected:.0f} events rejected")
    if result.spool_depth > max(result.events_per_s, 10):
        why.append(f"spool backlog {result.spool_depth:,.0f} events")
    result.kept_up, result.why = not why, why
    return result


def wait_quiet(env: Environment, limit: float = 10.0) -> float:
    """Wait (up to `limit` s) until the rest of the machine (others share it) uses < QUIET of a core."""
    deadline = time.monotonic() + limit
    while True:
        ours = [env.broker_pid, *env.sim_pids]
        busy0, ours0, t0 = machine_busy_seconds(), _total_cpu(ours), time.monotonic()
        time.sleep(0.5)
        other = (machine_busy_seconds() - busy0 - (_total_cpu(ours) - ours0)) / (time.monotonic() - t0)
        if other < QUIET or time.monotonic() > deadline:
            return other


def _wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # written by now, unless it is huge


def run_trial(
    env: Environment,
    label: str,
    load: Load,
    *,
    warmup: float,
    window: float,
    baseline: str | None = None,
    phases: str | None = None,
    profile_to: Path | None = None,
    pyspy_to: Path | None = None,
    tracemalloc_to: Path | None = None,
) -> Result:
    """One gateway (ours, or the baseline in `baseline` mode) on `load`: start, warm up, measure, stop."""
    kind = f"naive {baseline}" if baseline else phases_kind(phases)
    directory = env.trial_dir(f"{label}-{kind}-{load}")
    print(f"  {label:<5} {kind:<19} {load!s:<22}", end="", flush=True)
    env.devices(load)  # simulators first, so that wait_quiet counts them as ours
    wait_quiet(env)
    subscriber = Subscriber(env, directory / "subscriber.log")
    try:
        gateway: Gateway | Baseline = (
            Baseline(env, directory, load, baseline)
            if baseline
            else Gateway(env, directory, load, phases=phases, profile_to=profile_to, tracemalloc_to=tracemalloc_to)
        )
        try:
            spy: list[subprocess.Popen[Any]] = []

            def during() -> None:
                if profile_to is not None:
                    os.kill(gateway.pid, signal.SIGUSR1)  # instrumented_gateway.py: start profiling
                if pyspy_to is not None:
                    with (directory / "py-spy.log").open("ab") as log:
                        spy.append(env.procs.spawn(
                            ["py-spy", "record", "--pid", str(gateway.pid), "--duration", str(round(window)),
                             "--rate", "1000", "--nonblocking", "--format", "raw", "--output", str(pyspy_to)],
                            stdout=log, stderr=log,
                        ))  # fmt: skip

            result = measure(env, gateway, subscriber, label, load, warmup, window, during)
            if profile_to is not None or tracemalloc_to is not None:
                os.kill(gateway.pid, signal.SIGUSR2)  # stop profiling, write the profile / allocation sites
                _wait_for_file(profile_to or tracemalloc_to or Path(), 120)
            for proc in spy:
                try:
                    proc.wait(window + 30)
                finally:
                    env.procs.stop(proc)
        finally:
            ended = gateway.close()
    finally:
        subscriber.close()
    result.exit = ended
    verdict = "kept up" if result.kept_up else "NOT kept up: " + "; ".join(result.why)
    print(
        f" {result.readings_per_s:>9,.0f} readings/s {result.polls_per_s:>6,.0f} polls/s "
        f"{result.cpu_per_1k:.4f} CPU-s/1k  p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  {verdict}"
        + ("" if ended == "ok" else f"; gateway {ended} on SIGTERM")
        + (f"; machine busy: other {result.other_cpu_pct:.0f}%" if result.other_cpu_pct > 100 * QUIET else ""),
        flush=True,
    )
    return result


def ramp(
    env: Environment,
    label: str,
    devices: int,
    registers: int,
    periods: Sequence[float],
    warmup: float,
    window: float,
    phases: str | None = None,
    protocol: str = "modbus",
) -> tuple[Result | None, list[Result]]:
    """Step the period down (the load up) until a trial does not keep up; the best one that did, and all."""
    results: list[Result] = []
    best: Result | None = None
    for period in periods:
        load = Load(devices, registers, period, protocol=protocol)
        result = run_trial(env, label, load, warmup=warmup, window=window, phases=phases)
        results.append(result)
        if not result.kept_up:
            break
        best = result
    if best is None and periods:  # not even the lightest load: say how far it went with a lighter one
        lighter = Load(devices, registers, periods[0] * 2, protocol=protocol)
        result = run_trial(env, label, lighter, warmup=warmup, window=window, phases=phases)
        results.append(result)
        best = result if result.kept_up else None
    return best, results


# --------------------------------------------------------------------------------------------------------------
# the subscriber process


def _max_gap(origins: array[int]) -> int:
    """The longest time (ns) between one device's consecutive events, in the order they were polled."""
    return max((b - a for a, b in pairwise(sorted(origins))), default=0)


def run_subscriber(port: int) -> None:
    """QoS 1 subscriber; stdin commands: start (open a window), stop (close it, print its figures), peek (print
    them, the window staying open), quit."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    loads: Callable[[bytes], Any]
    try:
        import orjson

        loads = orjson.loads
    except ImportError:
        loads = json.loads

    lock = threading.Lock()
    subscribed = threading.Event()
    window: dict[str, Any] = {"on": False}
    latencies = array("q")
    ids: set[str] = set()
    origins: dict[str, array[int]] = {}  # per device, the origin of each event: gaps show lost events

    def reset() -> None:
        window.update(messages=0, readings=0, duplicates=0, start=time.monotonic())
        del latencies[:]
        ids.clear()
        origins.clear()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(TOPIC_FILTER, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = time.time_ns()
        if not window["on"]:
            return
        event = loads(message.payload)
        readings = event["readings"]
        with lock:
            if not window["on"]:
                return
            window["messages"] += 1
            window["readings"] += len(readings)
            latencies.extend([received - reading["origin"] for reading in readings])
            if event["id"] in ids:
                window["duplicates"] += 1
            else:
                origins.setdefault(event["deviceName"], array("q")).append(readings[0]["origin"])
            ids.add(event["id"])

    # MQTT 3.1.1: the broker strips the MQTT 5 properties, which paho would otherwise decode in pure Python.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", protocol=mqtt.MQTTv311)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(LOOPBACK, port, keepalive=60)
    client.loop_start()
    try:
        if not subscribed.wait(15):
            raise SystemExit("not subscribed within 15 s")
        print("ready", flush=True)
        reset()
        for line in sys.stdin:
            command = line.strip()
            if command == "start":
                with lock:
                    reset()
                    window["on"] = True
            elif command in ("stop", "peek"):
                with lock:
                    window["on"] = window["on"] and command == "peek"
                    seconds = time.monotonic() - window["start"]
                    ordered = sorted(latencies)
                    stats = {k: window[k] for k in ("messages", "readings", "duplicates")}
                    stats["unique"] = len(ids)
                    stats["max_gap_ms"] = max((_max_gap(o) for o in origins.values()), default=0) / 1e6

                def percentile(q: float, ordered: list[int] = ordered) -> float:
                    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else math.nan

                stats.update(seconds=seconds, p50_ms=percentile(0.5), p99_ms=percentile(0.99), max_ms=percentile(1))
                print(json.dumps(stats), flush=True)
            elif command == "quit":
                break
    finally:
        client.disconnect()
        client.loop_stop()


# --------------------------------------------------------------------------------------------------------------
# profiles


def _category(filename: str, name: str) -> str:
    path = "/" + filename.replace("\\", "/")  # py-spy shortens paths to "paho/mqtt/client.py"
    for needle, category in (
        ("/pymodbus/", "pymodbus (client, framer, PDU encode/decode)"),
        ("/paho/", "paho-mqtt (publish, packets, socket I/O)"),
        ("yurt_iot/runtime/events.py", "EventEncoder (events.py)"),
        ("yurt_iot/runtime/values.py", "ValueSpec (values.py)"),
        ("yurt_iot/runtime/spool.py", "spool (spool.py)"),
        ("yurt_iot/runtime/publisher.py", "MqttPublisher (publisher.py)"),
        ("yurt_iot/runtime/device.py", "DeviceRunner (device.py)"),
        ("yurt_iot/runtime/scheduler.py", "DeviceRunner (device.py)"),
        ("drivers/modbus/", "Modbus driver (link, plan, codec)"),
        ("yurt_iot_drivers/", "Modbus driver (link, plan, codec)"),
        ("/prometheus_client/", "prometheus_client (metrics)"),
        ("/asyncio/", "asyncio (event loop, tasks, locks, timeouts)"),
        ("/uuid.py", "uuid"),
        ("/json/", "json"),
        ("/logging/", "logging"),
    ):
        if needle in path:
            return category
    if path == "/~":
        return f"builtin {name}"
    return "other Python (" + "/".join(path.split("/")[-2:]) + ")"


# Frames every busy stack goes through (event loop, runner, CLI): their cumulative share says nothing.
_FRAMEWORK = frozenset({"_run", "run_forever", "_run_once", "run_until_complete", "run", "main", "invoke", "__call__",
                        "<module>", "_run_code", "_run_module_as_main", "wrapper", "gateway", "select"})  # fmt: skip
_IDLE = ("poll' of 'select.epoll", "select.select", "acquire' of '_thread.lock")
_SYSCALLS = ("'send' of", "'recv' of", "'sendmsg' of", "'recv_into'", "posix.writev", "posix.write", "posix.read",
             "'write' of '_io", "'read' of '_io", "posix.fsync")  # fmt: skip


def summarise_cprofile(path: Path, readings: float, events: float, top: int = 20) -> list[str]:
    """Busy time (idle epoll waits left out) by category and the top functions, as lines of text."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    idle = sum(tt for (f, _, n), (_, _, tt, _, _) in stats.items() if f == "~" and any(i in n for i in _IDLE))
    total = sum(v[2] for v in stats.values())
    busy = total - idle
    by_category: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, tt, _, callers) in stats.items():
        if filename == "~" and any(i in name for i in _IDLE):
            continue
        if filename == "~" and any(s in name for s in _SYSCALLS):
            by_category["socket/file syscalls (send, recv, writev)"] += tt
        elif filename == "~" and callers:
            # A C function's own time counts for the Python code that called it (per-caller tottime).
            for (caller_file, _, caller_name), caller_stats in callers.items():
                by_category[_category(caller_file, caller_name)] += caller_stats[2]
        else:
            by_category[_category(filename, name)] += tt
    lines = [
        f"cProfile of the gateway over the window: {busy:.2f} s busy ({idle:.2f} s idle in epoll left out); "
        f"{readings:,.0f} readings in {events:,.0f} events delivered; under the profiler (which inflates small calls)",
        f"that is {busy / readings * 1e6:.1f} us per reading, {busy / events * 1e6:.0f} us per event",
        "",
        "where the busy time goes (C functions' time added to their Python callers, syscalls apart):",
        "     %        s  us/event  category",
    ]
    for category, tt in sorted(by_category.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * tt / busy:5.1f}%  {tt:7.3f}  {tt / events * 1e6:8.1f}  {category}")

    def label(key: tuple[str, int, str]) -> str:
        filename, line, name = key
        if filename == "~":
            return name
        short = "/".join(filename.replace("\\", "/").split("/")[-2:])
        return f"{short}:{line}({name})"

    rows = [(k, v) for k, v in stats.items() if not (k[0] == "~" and any(i in k[2] for i in _IDLE))]
    lines += ["", f"top {top} functions by own time (tottime):", "     %    tottime     calls  function"]
    for key, (_, nc, tt, _, _) in sorted(rows, key=lambda kv: -kv[1][2])[:top]:
        lines.append(f"  {100 * tt / busy:5.1f}%  {tt:8.3f}  {nc:9d}  {label(key)}")
    lines += ["", f"top {top} functions by cumulative time (of busy time; callers include their callees):",
              "     %    cumtime     calls  function"]  # fmt: skip
    cumulative = [(k, v) for k, v in rows if k[2] not in _FRAMEWORK and "_contextvars" not in k[2] and v[3] <= busy]
    for key, (_, nc, _, ct, _) in sorted(cumulative, key=lambda kv: -kv[1][3])[:top]:
        lines.append(f"  {100 * ct / busy:5.1f}%  {ct:8.3f}  {nc:9d}  {label(key)}")
    return lines


def summarise_pyspy(path: Path, top: int = 20) -> list[str]:
    """py-spy's raw (collapsed) stacks: own and inclusive share of samples, per function and category."""
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    by_category: dict[str, int] = defaultdict(int)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        own[leaf] += count
        filename = leaf[leaf.find("(") + 1 : leaf.rfind(":")] if "(" in leaf else ""
        by_category[_category(filename, leaf)] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["py-spy recorded no samples"]
    lines = [f"py-spy: {total} samples of the gateway's busy threads (idle left out)", "", "by category (leaf frame):"]
    for category, n in sorted(by_category.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {category}")
    lines += ["", f"top {top} functions by own samples:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
    lines += ["", f"top {top} functions by inclusive samples (event loop, runner and CLI frames left out):"]
    shown = 0
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]
        if name in _FRAMEWORK or any(s in frame for s in ("typer/", "_click/", "runpy", "asyncio/runners.py")):
            continue
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
        shown += 1
        if shown == top:
            break
    return lines


# --------------------------------------------------------------------------------------------------------------
# reports


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def detail_table(results: Sequence[Result]) -> str:
    headers = ["scen", "gateway", "load", "offered r/s", "delivered r/s", "events/s", "polls/s", "poll ms", "CPU-s/1k",
               "gw CPU%", "p50 ms", "p99 ms", "max ms", "RSS MB", "HWM MB", "late", "err", "spool", "sub%",
               "sims%", "mqtt%", "other%", "kept up", "exit"]  # fmt: skip
    rows = [
        [r.label, r.kind, str(r.load), f"{r.load.readings_per_s:,.0f}", f"{r.readings_per_s:,.0f}",
         f"{r.events_per_s:,.0f}", f"{r.polls_per_s:,.0f}", _ms(r.poll_ms), f"{r.cpu_per_1k:.4f}", f"{r.cpu_pct:.0f}",
         _ms(r.p50_ms), _ms(r.p99_ms), _ms(r.max_ms), f"{r.rss_mb:.1f}", f"{r.hwm_mb:.1f}", f"{r.late:.0f}",
         f"{r.errors:.0f}", f"{r.spool_depth:.0f}", f"{r.sub_cpu_pct:.0f}", f"{r.sims_cpu_pct:.0f}",
         f"{r.broker_cpu_pct:.0f}", f"{r.other_cpu_pct:.0f}", "yes" if r.kept_up else "NO", r.exit]
        for r in results
    ]  # fmt: skip
    return table(headers, rows)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def targets_table(parts: dict[str, Any], results: Sequence[Result]) -> str:
    rows: list[list[str]] = []
    if "a" in parts:
        best: Result | None = parts["a"]
        rows.append([
            "(a) max readings/s delivered, 100 dev x 125 reg", ">= 150,000 /s",
            f"{best.readings_per_s:,.0f} /s ({best.load})" if best else "none sustained",
            _verdict(best is not None and best.readings_per_s >= 150_000),
        ])  # fmt: skip
    if "b" in parts:
        best = parts["b"]
        rows.append([
            "(b) device polls/s, 50 registers per device", ">= 1,000 /s",
            f"{best.polls_per_s:,.0f} /s ({best.load})" if best else "none sustained",
            _verdict(best is not None and best.polls_per_s >= 1000),
        ])  # fmt: skip
    if "c" in parts:
        c: Result = parts["c"]
        note = f" ({c.load}{'' if c.kept_up else ', NOT kept up'})"
        rows += [
            ["(c) CPU-s per 1000 readings at 10k readings/s", "<= 0.008", f"{c.cpu_per_1k:.4f}{note}",
             _verdict(c.kept_up and c.cpu_per_1k <= 0.008)],
            ["(c) latency p50 at 10k readings/s", "<= 5 ms", f"{c.p50_ms:.1f} ms", _verdict(c.p50_ms <= 5)],
            ["(c) latency p99 at 10k readings/s", "<= 20 ms", f"{c.p99_ms:.1f} ms", _verdict(c.p99_ms <= 20)],
        ]  # fmt: skip
    ours = [r for r in results if r.kind == "yurt-iot" and r.load.devices == 100]
    if ours and {"a", "b", "c"} & parts.keys():
        top = max(ours, key=lambda r: r.hwm_mb)
        by_registers: dict[int, float] = defaultdict(float)
        for r in ours:
            by_registers[r.load.registers] = max(by_registers[r.load.registers], r.hwm_mb)
        rows.append([
            "(d) RSS, 100 devices: max VmHWM over the trials", "<= 60 MB",
            f"{top.hwm_mb:.1f} MB ({top.label} {top.load}); by registers/device: "
            + ", ".join(f"{n}: {mb:.1f} MB" for n, mb in sorted(by_registers.items())),
            _verdict(top.hwm_mb <= 60),
        ])  # fmt: skip
    for protocol, what in (("opcua", "OPC-UA, one batched Read per poll"), ("mqtt", "MQTT devices pushing")):
        if protocol in parts:
            best = parts[protocol]
            measured = (
                "none sustained"
                if best is None
                else (
                    f"{best.readings_per_s:,.0f} readings/s, {best.polls_per_s:,.0f} events/s ({best.load}); "
                    f"CPU-s/1k {best.cpu_per_1k:.4f}, p50 {best.p50_ms:.1f} ms, p99 {best.p99_ms:.1f} ms, "
                    f"VmHWM {best.hwm_mb:.1f} MB"
                )
            )
            rows.append([f"max readings/s sustained, {what}", "no target", measured, "n/a"])
    return table(["scenario", "target", "measured", "result"], rows)


def baseline_table(pairs: Sequence[tuple[Result, Result]]) -> str:
    """Ours next to the naive gateway on the same load, with ours / baseline."""
    headers = ["load", "metric", "yurt-iot", "baseline", "baseline kind", "ours/baseline"]
    rows: list[list[str]] = []
    for ours, base in pairs:
        for metric, fmt, attribute in (
            ("readings/s delivered", "{:,.0f}", "readings_per_s"),
            ("device polls/s", "{:,.0f}", "polls_per_s"),
            ("CPU-s per 1000 readings", "{:.4f}", "cpu_per_1k"),
            ("gateway CPU %", "{:.0f}", "cpu_pct"),
            ("latency p50 ms", "{:.1f}", "p50_ms"),
            ("latency p99 ms", "{:.1f}", "p99_ms"),
            ("VmHWM MB", "{:.1f}", "hwm_mb"),
        ):
            a, b = float(getattr(ours, attribute)), float(getattr(base, attribute))
            ratio = a / b if b and not math.isnan(a) and not math.isnan(b) and math.isfinite(b) else math.nan
            rows.append([str(ours.load), metric, fmt.format(a), fmt.format(b), base.kind,
                         "-" if math.isnan(ratio) else f"{ratio:.2f}x"])  # fmt: skip
        rows.append([str(ours.load), "kept up", "yes" if ours.kept_up else "no", "yes" if base.kept_up else "no",
                     base.kind, ""])  # fmt: skip
    return table(headers, rows)


# --------------------------------------------------------------------------------------------------------------
# main


@dataclass
class Plan:
    """The loads of the default run; --devices/--registers/--period/--duration/--warmup override them."""

    a_periods: tuple[float, ...] = (0.1, 0.08, 0.06, 0.05, 0.04)  # 100x125: 125k .. 312k readings/s
    b_periods: tuple[float, ...] = (0.1, 0.05, 0.04, 0.03, 0.025)  # 100x50: 1,000 .. 4,000 polls/s
    b_load: Load = Load(100, 50, 0.1)  # the baseline's (b) load: 1,000 polls/s
    c_load: Load = Load(100, 50, 0.5)  # 10,000 readings/s
    c_groups: int = 10  # the what-if of poll phases in 10 groups
    # The other drivers, no targets: OPC-UA servers are pure Python (asyncua) here, and share the two cores.
    opcua_load: Load = Load(20, 50, 0.1, protocol="opcua")
    opcua_periods: tuple[float, ...] = (0.2, 0.1, 0.05, 0.025, 0.015)  # 20x50: 5,000 .. 66,667 readings/s
    mqtt_load: Load = Load(100, 10, 0.1, protocol="mqtt")
    mqtt_periods: tuple[float, ...] = (0.1, 0.05, 0.025, 0.0125)  # 100 devices x 10 values: 10k .. 80k readings/s
    warmup: float = 3.0
    window: float = 8.0
    c_window: float = 12.0


def _override(args: argparse.Namespace, load: Load) -> Load:
    return Load(
        args.devices or load.devices,
        args.registers or load.registers,
        args.period or load.period,
        args.topology,
        load.protocol,
    )


def code_state() -> str:
    """The commit measured, and the product files that differ from it (others work in this tree too)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "yurt_iot", "drivers"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return "unknown (no git)"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(changed)}" if changed else " (clean)")


@contextlib.contextmanager
def _terminate_on_signals() -> Iterator[None]:
    """SIGINT (also where a shell made background jobs ignore it), SIGTERM and SIGHUP end the run like Ctrl-C:
    through the finally blocks that stop every process."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)
    pairs: list[tuple[Result, Result]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_scenarios(env: Environment, args: argparse.Namespace, plan: Plan, report: Report) -> None:
    scenario, results = args.scenario, report.results
    devices = args.devices or 100
    if scenario in ("all", "a"):
        periods = (args.period,) if args.period else plan.a_periods
        report.parts["a"], runs = ramp(
            env, "a", devices, args.registers or 125, periods, plan.warmup, plan.window, args.phases
        )
        results += runs
    if scenario in ("all", "b"):
        periods = (args.period,) if args.period else plan.b_periods
        report.parts["b"], runs = ramp(
            env, "b", devices, args.registers or 50, periods, plan.warmup, plan.window, args.phases
        )
        results += runs
    if scenario in ("all", "c", "baseline"):
        c_load = _override(args, plan.c_load)
        report.parts["c"] = ours_c = run_trial(
            env, "c", c_load, warmup=plan.warmup, window=plan.c_window, phases=args.phases
        )
        results.append(ours_c)
    if scenario in ("all", "c"):  # what-ifs: not the product as it is, so not in the targets
        for phases in ("aligned", str(plan.c_groups)):
            results.append(run_trial(env, "c-if", c_load, warmup=plan.warmup, window=plan.c_window, phases=phases))
        other = "shared" if c_load.topology == "per-device" else "per-device"
        results.append(
            run_trial(env, "c-if", Load(c_load.devices, c_load.registers, c_load.period, other),
                      warmup=plan.warmup, window=plan.c_window)
        )  # fmt: skip
    if scenario in ("all", "baseline"):
        b_load = _override(args, plan.b_load)
        ours_b = next((r for r in results if r.kind == phases_kind(args.phases) and r.load == b_load), None)
        if ours_b is None:
            ours_b = run_trial(env, "b", b_load, warmup=plan.warmup, window=plan.window, phases=args.phases)
            results.append(ours_b)
        for mode in ("wide", "per-register"):
            for ours, window in ((ours_c, plan.c_window), (ours_b, plan.window)):
                base = run_trial(env, "base", ours.load, warmup=plan.warmup, window=window, baseline=mode)
                results.append(base)
                report.pairs.append((ours, base))

    for protocol in ("opcua", "mqtt"):
        if scenario in (protocol, "protocols"):
            load = _override(args, getattr(plan, f"{protocol}_load"))
            periods = (args.period,) if args.period else getattr(plan, f"{protocol}_periods")
            report.parts[protocol], runs = ramp(
                env, protocol, load.devices, load.registers, periods, plan.warmup, plan.window, args.phases, protocol
            )
            results += runs


def run_profiles(env: Environment, args: argparse.Namespace, plan: Plan, report: Report) -> None:
    default = {
        "a": Load(100, 125, 0.1), "b": Load(100, 50, 0.1), "opcua": plan.opcua_load, "mqtt": plan.mqtt_load
    }.get(args.scenario, plan.c_load)  # fmt: skip
    load = _override(args, default)
    prof = env.dir / "gateway.prof"
    r = run_trial(env, "prof", load, warmup=plan.warmup, window=plan.window, profile_to=prof, phases=args.phases)
    report.results.append(r)
    report.notes += summarise_cprofile(prof, r.readings_per_s * r.window_s, r.events_per_s * r.window_s)
    if shutil.which("py-spy") is None:
        report.notes += ["", "py-spy is not installed (pip install py-spy): no sampling profile"]
        return
    spy = env.dir / "py-spy.txt"
    r = run_trial(env, "spy", load, warmup=plan.warmup, window=plan.window, pyspy_to=spy, phases=args.phases)
    report.results.append(r)
    report.notes += [""] + (summarise_pyspy(spy) if spy.exists() else ["py-spy wrote nothing (see its log)"])


def run_memory(env: Environment, args: argparse.Namespace, plan: Plan, report: Report) -> None:
    load = _override(args, Load(100, 125, 1.0))
    out = env.dir / "tracemalloc.txt"
    r = run_trial(env, "mem", load, warmup=plan.warmup, window=plan.window, tracemalloc_to=out, phases=args.phases)
    report.results.append(r)
    report.notes += [f"tracemalloc of the gateway on {load} (RSS figures above include tracemalloc's own cost)", ""]
    report.notes += out.read_text().splitlines() if out.exists() else ["tracemalloc wrote nothing"]


def print_report(report: Report) -> None:
    print()
    print("every trial (delivered = at the subscriber; CPU-s/1k = gateway CPU-seconds per 1000 readings delivered;")
    print("poll ms = mean poll duration, waiting for the connection included; late/err = late polls and poll errors")
    print("in the window; spool = events in the spool at the end; sub%/sims%/mqtt% = CPU of the subscriber, the")
    print("simulators and Mosquitto, other% = the rest of the machine; 100% = one core):")
    print(detail_table(report.results))
    if report.parts:
        print()
        print("targets (2 cores; simulators, broker and subscriber on the same machine):")
        print(targets_table(report.parts, report.results))
    if report.pairs:
        print()
        print("baseline: bench/baseline_naive.py on the same loads (ours / baseline: > 1 is better for readings/s")
        print("and polls/s, < 1 is better for CPU, latency and memory):")
        print(baseline_table(report.pairs))
    hung = [r for r in report.results if r.exit == "hung"]
    noisy = [r for r in report.results if r.other_cpu_pct > 100 * QUIET]
    if hung:
        print(f"\nthe gateway did not exit on SIGTERM within {STOP_TIMEOUT:.0f} s (killed) after {len(hung)} of "
              f"{len(report.results)} trials")  # fmt: skip
    if noisy:
        print(f"\n{len(noisy)} trials shared the machine with other work (other% > {100 * QUIET:.0f}): "
              "their figures are pessimistic")  # fmt: skip
    if report.notes:
        print()
        print("\n".join(report.notes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenario", choices=["all", "a", "b", "c", "baseline", "opcua", "mqtt", "protocols"], default="all"
    )
    parser.add_argument("--devices", type=int, help="devices (default 100)")
    parser.add_argument("--registers", type=int, help="registers per device (default: the scenario's)")
    parser.add_argument("--period", type=float, help="autoEvent period in seconds (default: the scenario's steps)")
    parser.add_argument(
        "--topology",
        choices=["per-device", "shared"],
        default="per-device",
        help=f"a simulator port per device, or {UNITS_PER_PROCESS} devices behind each port",
    )
    parser.add_argument("--duration", type=float, help="measuring window in seconds (default 8; 12 for (c))")
    parser.add_argument("--warmup", type=float, help="seconds before the window (default 3)")
    parser.add_argument(
        "--phases", metavar="aligned|GROUPS", help="what-if poll phases of our gateway (bench/instrumented_gateway.py)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--profile", action="store_true", help="profile the gateway (cProfile, py-spy) on one load")
    mode.add_argument("--memory", action="store_true", help="tracemalloc the gateway's live allocations")
    parser.add_argument(
        "--broker-inflight",
        type=int,
        default=0,
        help="Mosquitto's max_inflight_messages (its default is 20; default here 0: no limit)",
    )
    parser.add_argument("--json", type=Path, help="also write every trial's figures to this file")
    parser.add_argument("--subscriber", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscriber:
        run_subscriber(args.subscriber)
        return 0

    plan = Plan()
    if args.duration:
        plan.window = plan.c_window = args.duration
    if args.warmup is not None:
        plan.warmup = args.warmup
    started = time.monotonic()
    report = Report()
    with _terminate_on_signals():
        env = Environment(Processes(), args.broker_inflight)
        try:
            print(f"code: {code_state()}", flush=True)
            print(f"broker on {LOOPBACK}:{env.broker.port}; temp dir {env.dir}; {os.cpu_count()} CPUs", flush=True)
            run = run_profiles if args.profile else run_memory if args.memory else run_scenarios
            run(env, args, plan, report)
        except KeyboardInterrupt:
            print("\ninterrupted; stopping every process", file=sys.stderr)
            return 130
        finally:
            env.close()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "load": asdict(r.load)} for r in report.results], indent=1))
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

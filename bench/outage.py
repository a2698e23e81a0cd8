"""Store-and-forward through a network outage: ``python bench/outage.py``.

The gateway publishes to Mosquitto through a TCP relay (socat) that this script can cut, as a WAN link to the
broker goes down; the QoS 1 subscriber stays on the broker itself. After a warm-up the relay is cut for
``--outage`` seconds (its connections reset, new ones refused) while the devices are still polled, so the
events pile up in the gateway's disk spool; then the link comes back. Printed:

- the backlog at the end of the outage (events in the spool) and the events refused (none while under bound);
- the replay: events acknowledged per second by the broker while the spool drains, and the gateway's CPU then,
  next to its CPU in steady state before the outage (the baseline run side by side);
- the drain time, from the link's return until the spool holds no more than a tenth of a second of events;
- what the subscriber got: distinct events against the events the gateway produced (none lost), duplicates
  (delivery is at-least-once), and the longest gap between two consecutive events of one device, which would
  show a lost event as a gap of two poll periods or more.

Default load: 100 Modbus devices x 10 registers every 100 ms (1,000 events/s), a 30 s outage. Processes, the
broker, simulators and the subscriber are bench/telemetry.py's.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from telemetry import (  # bench/, beside this file
    LOOPBACK,
    BenchError,
    Environment,
    Gateway,
    Load,
    Processes,
    Subscriber,
    code_state,
    cpu_seconds,
    free_port,
    table,
)


class Relay:
    """socat between the gateway and the broker; `cut` kills it with its forked connections, `heal` starts it."""

    def __init__(self, procs: Processes, target: int) -> None:
        if shutil.which("socat") is None:
            raise BenchError("bench/outage.py needs socat (apt install socat; ./scripts/test installs it)")
        self.port, self._target, self._procs = free_port(), target, procs
        self._proc: subprocess.Popen[bytes] | None = None
        self.heal()

    def heal(self) -> None:
        self._proc = self._procs.spawn(
            ["socat", f"TCP-LISTEN:{self.port},bind={LOOPBACK},reuseaddr,fork", f"TCP:{LOOPBACK}:{self._target}"]
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"socat not listening on {self.port}") from None
                time.sleep(0.02)

    def cut(self) -> None:
        """Every connection through the relay reset and the port closed: a session of its own, killed whole."""
        proc, self._proc = self._proc, None
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_drained(gateway: Gateway, depth: float, limit: float) -> float:
    """Seconds until the gateway's spool holds at most `depth` events (BenchError after `limit`)."""
    started = time.monotonic()
    while gateway.counters()["spool_depth"] > depth:
        if time.monotonic() - started > limit:
            raise BenchError(f"the spool did not drain within {limit:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def wait_delivered(subscriber: Subscriber, events: float, limit: float) -> dict[str, float]:
    """The subscriber's figures once it has `events` distinct events, or after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        stats = subscriber.peek()
        if stats["unique"] >= events or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def run(env: Environment, load: Load, warmup: float, outage: float) -> list[list[str]]:
    relay = Relay(env.procs, env.broker.port)
    directory = env.trial_dir(f"outage-{load}")
    env.devices(load)
    subscriber = Subscriber(env, directory / "subscriber.log")
    subscriber.start()  # before the gateway: every event it ever produces is in the window
    gateway = Gateway(env, directory, load, mqtt_port=relay.port)
    try:
        time.sleep(warmup)
        steady = (time.monotonic(), cpu_seconds(gateway.pid))
        time.sleep(min(5.0, warmup))
        cut_at, cpu_at_cut, before = time.monotonic(), cpu_seconds(gateway.pid), gateway.counters()
        steady_cpu = (cpu_at_cut - steady[1]) / (cut_at - steady[0])
        relay.cut()
        print(f"link cut for {outage:g} s ...", flush=True)
        time.sleep(outage)
        during = gateway.counters()
        healed_at, cpu_at_heal = time.monotonic(), cpu_seconds(gateway.pid)
        relay.heal()
        drain_s = wait_drained(gateway, max(10.0, load.polls_per_s / 10), limit=600)
        cpu_drain = (cpu_seconds(gateway.pid) - cpu_at_heal) / drain_s
        after = gateway.counters()
        produced = after["events"]
        stats = wait_delivered(subscriber, produced, limit=60)
        outage_cpu = (cpu_at_heal - cpu_at_cut) / (healed_at - cut_at)
    finally:
        exit_state = gateway.close()
        subscriber.close()
        relay.cut()
    backlog = during["spool_depth"]
    replayed = (after["acked"] - during["acked"]) / drain_s
    lost = max(0.0, produced - stats["unique"])
    cpu = " / ".join(f"{100 * share:.0f}%" for share in (steady_cpu, outage_cpu, cpu_drain)) + " of a core"
    period_ms = load.period * 1000
    return [
        ["load", f"{load} ({load.polls_per_s:,.0f} events/s, {load.readings_per_s:,.0f} readings/s)"],
        ["outage", f"{outage:g} s; {during['events'] - before['events']:,.0f} events produced meanwhile"],
        ["backlog in the spool when the link returned", f"{backlog:,.0f} events"],
        ["events refused (spool full)", f"{after['rejected']:,.0f}"],
        ["drain time after the link returned", f"{drain_s:.1f} s"],
        ["replay rate (broker acks per second while draining)", f"{replayed:,.0f} events/s"],
        ["gateway CPU: steady / during the outage / draining", cpu],
        ["events produced by the gateway", f"{produced:,.0f}"],
        ["distinct events at the subscriber", f"{stats['unique']:,.0f} ({lost:,.0f} missing)"],
        ["duplicates (at-least-once)", f"{stats['duplicates']:,.0f}"],
        ["longest gap between one device's events", f"{stats['max_gap_ms']:.0f} ms (period {period_ms:g} ms)"],
        ["gateway exit on SIGTERM", exit_state],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--registers", type=int, default=10)
    parser.add_argument("--period", type=float, default=0.1, help="poll period in seconds (default 0.1)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the link is down (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not math.isfinite(args.outage) or args.outage <= 0:
        parser.error("--outage must be a positive number of seconds")
    env = Environment(Processes())
    try:
        print(f"code: {code_state()}", flush=True)
        rows = run(env, Load(args.devices, args.registers, args.period), args.warmup, args.outage)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process", file=sys.stderr)
        return 130
    finally:
        env.close()
    print(table(["", "measured"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The device table that `yurt-iot devices ls` prints and `yurt-iot demo` keeps live: one row per device with its
protocol, state, readings and latest values, from the gateway's devices API documents (`runtime.deviceapi`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

_STATE_STYLE = {"UP": "green", "DOWN": "red"}


def format_value(value: Any) -> str:
    """A reading as a person reads it: 4 significant digits, lower-case booleans, short strings."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def latest_values(device: Mapping[str, Any]) -> str:
    return "  ".join(f"{name}={format_value(entry['value'])}" for name, entry in device["latest"].items())


def devices_table(devices: Sequence[Mapping[str, Any]], rates: Mapping[str, float] | None = None) -> Table:
    """The table of `devices` (summaries from the devices API); with `rates`, a readings/s column."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
    for column in ("DEVICE", "PROTOCOL", "STATE", "READINGS", *(("READINGS/S",) if rates is not None else ())):
        table.add_column(column, no_wrap=True, justify="right" if column.startswith("READINGS") else "left")
    table.add_column("LATEST VALUES", overflow="fold")
    for device in devices:
        state = Text(device["state"], style=_STATE_STYLE.get(device["state"], "yellow"))
        rate = () if rates is None else (f"{rates.get(device['name'], 0.0):.1f}",)
        table.add_row(device["name"], device["protocol"], state, str(device["readings"]), *rate, latest_values(device))
    return table

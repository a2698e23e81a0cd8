"""OpenYurt yurt-iot-dock's flags read into ours: what its Deployments pass must run `yurt-iot dock` unchanged."""

from __future__ import annotations

import pytest

from yurt_iot.iot.dock_flags import EdgeXAddresses, bind_address, edgex_addresses, ops_address


def test_a_release_turns_edgex_sync_on_at_openyurts_addresses_and_period() -> None:
    assert edgex_addresses(None, None, None, "napa", None) == EdgeXAddresses(
        "http://edgex-core-metadata:59881", "http://edgex-core-command:59882", 5.0
    )


def test_given_addresses_and_period_win_and_a_bus_keeps_the_long_backstop() -> None:
    given = edgex_addresses("10.0.0.1:59881", "https://command:59882", 12.0, "Odessa", None)
    assert given == EdgeXAddresses("http://10.0.0.1:59881", "https://command:59882", 12.0)
    assert edgex_addresses(None, None, None, "minnesota", "edgex-mqtt-broker").resync_period == 30.0


def test_without_a_release_nothing_is_assumed() -> None:
    assert edgex_addresses(None, None, None, None, None) == EdgeXAddresses(None, None, 30.0)


def test_an_unknown_release_is_refused_by_flag_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"--version: unknown EdgeX release 'levski' \(known: minnesota, napa"):
        edgex_addresses(None, None, None, "levski", None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(":8081", ("0.0.0.0", 8081)), ("127.0.0.1:8081", ("127.0.0.1", 8081)), ("[::1]:9", ("::1", 9)), ("0", None)],
)
def test_go_listen_addresses(value: str, expected: tuple[str, int] | None) -> None:
    assert bind_address(value, "--health-probe-bind-address") == expected


@pytest.mark.parametrize("value", ["8081", ":http", ":0", ":70000", ""])
def test_a_bad_listen_address_names_the_flag(value: str) -> None:
    with pytest.raises(ValueError, match="--metrics-bind-address: expected"):
        ops_address(None, value, "127.0.0.1", 9464)


def test_the_probe_address_moves_the_ops_endpoints() -> None:
    assert ops_address(":8081", ":8080", "127.0.0.1", 9464) == ("0.0.0.0", 8081)
    assert ops_address(None, None, "127.0.0.1", 9464) == ("127.0.0.1", 9464)

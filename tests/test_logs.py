"""Log set-up: one JSON object per line when asked, and no routine chatter of libraries at INFO."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import redirect_stderr

import pytest

from yurt_iot.logs import LogFormat, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("asyncua").setLevel(logging.NOTSET)


def _logged(fmt: LogFormat, level: str = "INFO") -> list[str]:
    stream = io.StringIO()
    with redirect_stderr(stream):
        setup_logging(fmt, level)
        logging.getLogger("yurt_iot.runtime.device").info("device %s is UP", "pump-1", extra={"device": "pump-1"})
        logging.getLogger("asyncua.common.subscription").info("Publish callback called with result: ...")
        logging.getLogger("asyncua.client.ua_client").warning("connection lost")
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_message_and_the_extra_fields() -> None:
    entries = [json.loads(line) for line in _logged("json")]
    assert entries[0]["message"] == "device pump-1 is UP" and entries[0]["device"] == "pump-1"
    assert entries[0]["level"] == "info" and entries[0]["time"].endswith("Z")


def test_asyncua_routine_traffic_is_left_out_but_its_warnings_are_kept() -> None:
    lines = _logged("console")
    assert len(lines) == 2
    assert "pump-1 is UP" in lines[0] and "connection lost" in lines[1]


def test_at_debug_everything_is_logged() -> None:
    assert any("Publish callback" in line for line in _logged("console", "DEBUG"))


def test_a_higher_level_leaves_info_out() -> None:
    [line] = _logged("console", "warning")
    assert "WARNING" in line and "connection lost" in line

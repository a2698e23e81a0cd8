"""Fixtures of the per-pool device controller tests: EdgeX core-metadata and core-command (the contract double
of yurt_iot/testing/edgex, see its README note) on the session's Mosquitto as their message bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto

REQUEST_TIMEOUT_S = 2.0
"""EdgeX's Service.RequestTimeout (5 s by default), shorter so that a missed validation fails sooner."""


@pytest.fixture
def edgex(mosquitto: Mosquitto) -> Iterator[EdgeX]:
    """EdgeX of the test's own (``.metadata_url``, ``.command_url``): one EdgeX serves one pool, and every
    controller mirrors all of its EdgeX, so tests must not share one."""
    with EdgeX(mosquitto, request_timeout=REQUEST_TIMEOUT_S) as services:
        yield services

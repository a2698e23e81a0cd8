"""EdgeX core-metadata and core-command for the EdgeX client tests (the contract double, see
yurt_iot/testing/edgex), with the session's Mosquitto as their message bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto

REQUEST_TIMEOUT_S = 2.0
"""EdgeX's Service.RequestTimeout (5 s by default), shorter so that timeout tests end sooner."""


@pytest.fixture(scope="session")
def edgex(mosquitto: Mosquitto) -> Iterator[EdgeX]:
    """core-metadata (``.metadata_url``) and core-command (``.command_url``) on 127.0.0.1, shared by the session:
    tests isolate themselves by unique object names and labels."""
    with EdgeX(mosquitto, request_timeout=REQUEST_TIMEOUT_S) as services:
        yield services

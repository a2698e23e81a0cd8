"""SCPI-style instruments (power supplies, meters) over TCP: an example of a third-party yurt-iot driver.

`driver` is what yurt-iot loads through the ``yurt_iot.drivers`` entry point (see pyproject.toml); `simulator`
is an instrument to test it against, and the tests show how the conformance kit is used.
"""

from .driver import ScpiDriver

__all__ = ["ScpiDriver"]

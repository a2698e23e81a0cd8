"""The built-in Modbus driver (protocols ``modbus-tcp`` and ``modbus-rtu``), EdgeX device-modbus compatible.

`driver.ModbusDriver` is the entry point; `codec` documents the resource attributes, `config` the protocol
properties, `plan` how reads are coalesced and `link` how connections fail and recover.
"""

from .driver import ModbusDriver

__all__ = ["ModbusDriver"]

"""The built-in MQTT driver (protocol ``mqtt``), EdgeX device-mqtt compatible.

`driver.MqttDriver` is the entry point; `config` documents the protocol properties, `codec` the JSON that
messages carry, and `broker` how a connection is shared, requests are matched to responses, and outages end.
"""

from .driver import MqttDriver

__all__ = ["MqttDriver"]

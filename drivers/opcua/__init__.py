"""The built-in OPC-UA client driver (protocol ``opcua``), EdgeX device-opc-ua compatible, on asyncua.

`driver.OpcUaDriver` is the entry point; `config` documents the protocol properties, `nodes` the resource
attributes (nodeId, objectId/methodId/inputMap, subscribe, publishingInterval), `session` how a session is made,
lost and made again, `subscriptions` how subscribed resources survive a server restart, `datatypes` and `codec`
how values are typed both ways, and `errors` what a failure means for the session.
"""

from .driver import OpcUaDriver

__all__ = ["OpcUaDriver"]

"""The controller's side of EdgeX Foundry: async clients of core-metadata and core-command (REST API v3, as
EdgeX 3.x and 4.x serve it), their DTOs and errors, and the mapping between our CRs and those DTOs.

``metadata`` and ``command`` are the clients, ``dtos`` the wire models, ``errors`` the exception tree and
``mapping`` the pure CR <-> DTO conversions. The pool's sync is built on them: ``sync`` wires it
(:func:`~yurt_iot.iot.edgex.sync.run_edgex_sync`), ``reconcile`` lines up one CR with its EdgeX object in both
directions, ``kinds`` holds what differs per kind, ``edge_state`` is the local picture of EdgeX, ``bus`` listens to
core-metadata's system events and ``properties`` writes desired values through core-command.
"""

from yurt_iot.iot.edgex.command import CoreCommandClient
from yurt_iot.iot.edgex.errors import Conflict, EdgeXError, InvalidRequest, Locked, NotFound, Unavailable
from yurt_iot.iot.edgex.metadata import MAX_PAGE_SIZE, CoreMetadataClient, ItemResult

__all__ = [
    "MAX_PAGE_SIZE",
    "Conflict",
    "CoreCommandClient",
    "CoreMetadataClient",
    "EdgeXError",
    "InvalidRequest",
    "ItemResult",
    "Locked",
    "NotFound",
    "Unavailable",
]

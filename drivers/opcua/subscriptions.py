"""Subscribed resources: monitored items of every device behind a session, kept on the server across reconnects.

The watches (`Watch`, one per subscribed resource) belong to the session and outlive its connections: devices
add and remove them at any time, and `Subscriptions.sync` brings the connection's server in line, creating the
monitored items of new watches (one CreateMonitoredItems request per publishing interval) and deleting those of
removed ones. A new connection starts with none, so after a reconnect every item is created again, on new
subscriptions of the new session. Nothing is transferred from the lost session: a restarted server no longer
has it, and clients that count on getting it back (python-opcua #1040, ThingsBoard gateway #1641) stay silent
after a server restart. A new monitored item reports its current value first, so values flow at once.

Each connection has one subscription per publishing interval in use. It asks for a keepalive at least every
`KEEPALIVE` seconds when nothing changes, so that asyncua notices a subscription the server dropped (it creates it
again), and a lifetime of at least `LIFETIME`, after which the server deletes the subscription of a gateway that
vanished. A monitored item samples at the publishing interval and keeps one value (queue size 1, discard oldest),
with the default data change filter (a new value or status): EdgeX's onChange semantics, the latest value of
each publishing interval. Values with a bad status are not pushed (they are logged once per change).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError
from asyncua.ua.uaprotocol_auto import (
    CreateSubscriptionParameters,
    MonitoredItemCreateRequest,
    MonitoredItemNotification,
    MonitoringMode,
    MonitoringParameters,
    ReadValueId,
    StatusChangeNotification,
)
from asyncua.ua.uatypes import NodeId, StatusCode

from yurt_iot.runtime.sdk import Value

from .codec import to_raw
from .errors import ends_connection

__all__ = ["KEEPALIVE", "LIFETIME", "Subscriptions", "Watch"]

logger = logging.getLogger(__name__)

KEEPALIVE: Final = 1.0
"""Longest silence, in seconds, of a healthy subscription; also the period of the session's keepalive reads."""
LIFETIME: Final = 60.0
"""Seconds without Publish requests after which the server may delete a subscription."""


@dataclass(frozen=True, slots=True)
class Watch:
    """A subscribed resource: whose changes of which node go where."""

    device: str
    resource: str
    node_id: NodeId
    interval: float
    """The publishing interval, in seconds."""


Changed = Callable[[Watch, Value], None]
"""Called with a watch and the raw value of a change the server reported."""
Broken = Callable[[Client, str], None]
"""Called with a connection's client and the reason when its subscriptions stopped working."""


class Subscriptions:
    """The watches of a session, and their monitored items on its current connection."""

    def __init__(self, on_change: Changed, on_broken: Broken) -> None:
        self._on_change, self._on_broken = on_change, on_broken
        self._watches: dict[int, Watch] = {}
        """By client handle, which the server sends back with each notification."""
        self._next_handle = 1
        self._client: Client | None = None
        self._subscriptions: dict[float, Subscription] = {}
        """Of the current connection, by publishing interval."""
        self._live: dict[int, tuple[Subscription, int]] = {}
        """Client handle -> the subscription and server id of its monitored item, on the current connection."""
        self._refused: dict[int, str] = {}
        """Watches the current connection's server refused, and why; tried again on the next connection."""
        self._problems: dict[int, str] = {}
        """The last problem logged for a watch's notifications, to log changes rather than floods."""
        self.dirty = False
        """Some watch has no monitored item yet, or some monitored item no watch: `sync` is due."""

    @property
    def active(self) -> bool:
        """Whether any resource is subscribed, so that the session must stay connected."""
        return bool(self._watches)

    def add(self, watch: Watch) -> int:
        """Register a watch; returns its handle for `remove`."""
        handle = self._next_handle
        self._next_handle += 1
        self._watches[handle] = watch
        self.dirty = True
        return handle

    def remove(self, handles: Iterable[int]) -> None:
        for handle in handles:
            self._watches.pop(handle, None)
            self._refused.pop(handle, None)
            self._problems.pop(handle, None)
        self.dirty = True

    def attach(self, client: Client) -> None:
        """A new connection: every watch needs a monitored item on it."""
        self.detach()
        self._client = client
        self.dirty = self.active

    def detach(self) -> None:
        """The connection is gone, and its subscriptions with it."""
        self._client = None
        self._subscriptions.clear()
        self._live.clear()
        self._refused.clear()

    async def sync(self) -> None:
        """Delete the monitored items of removed watches and create those of new ones, on the current connection.

        Raises the errors that end the connection; a service fault refuses the watches of its request (logged).
        """
        client = self._client
        assert client is not None, "sync needs a connection"
        self.dirty = False
        await self._delete_stale()
        missing: dict[float, list[int]] = {}
        for handle, watch in self._watches.items():
            if handle not in self._live and handle not in self._refused:
                missing.setdefault(watch.interval, []).append(handle)
        for interval, handles in missing.items():
            if self._client is not client:
                return  # the connection went meanwhile
            await self._create(client, interval, handles)

    async def _create(self, client: Client, interval: float, handles: list[int]) -> None:
        try:
            subscription = self._subscriptions.get(interval)
            if subscription is None:
                subscription = await client.create_subscription(_parameters(interval), _Handler(self, client))
                self._subscriptions[interval] = subscription
            requested = [handle for handle in handles if handle in self._watches]
            results = await subscription.create_monitored_items(
                [_item_request(handle, self._watches[handle]) for handle in requested]
            )
        except UaStatusCodeError as error:
            if ends_connection(error):
                raise
            for handle in handles:
                self._refuse(handle, f"the server refused to monitor it: {error}")
            return
        if self._client is not client:
            return
        for handle, result in zip(requested, results, strict=True):
            if isinstance(result, StatusCode):
                self._refuse(handle, f"the server refused to monitor it: {result.name}")
            else:  # an item unwatched meanwhile is deleted by the next sync, which `remove` made due
                self._live[handle] = (subscription, result)

    async def _delete_stale(self) -> None:
        stale: dict[Subscription, list[int]] = {}
        for handle, (subscription, item) in list(self._live.items()):
            if handle not in self._watches:
                stale.setdefault(subscription, []).append(item)
                del self._live[handle]
        for subscription, items in stale.items():
            try:
                await subscription.unsubscribe(items)
            except UaStatusCodeError as error:
                if ends_connection(error):
                    raise
                logger.debug("deleting %d monitored items: %s", len(items), error)  # they are unwatched anyway

    def _refuse(self, handle: int, reason: str) -> None:
        watch = self._watches.get(handle)
        if watch is None:
            return
        self._refused[handle] = reason
        logger.warning(
            "device %s resource %s: cannot subscribe to %s: %s",
            watch.device, watch.resource, watch.node_id.to_string(), reason,
        )  # fmt: skip

    def _changed(self, client: Client, item: MonitoredItemNotification) -> None:
        if client is not self._client:
            return  # a late notification of a connection that was dropped
        watch = self._watches.get(item.ClientHandle)
        if watch is None:
            return  # unwatched since
        data = item.Value
        status = data.StatusCode or StatusCode()
        try:
            if status.is_bad():
                raise ValueError(f"the server reports {status.name}")
            raw = to_raw(None if data.Value is None else data.Value.Value)
        except ValueError as error:
            self._problem(item.ClientHandle, watch, str(error))
            return
        self._problems.pop(item.ClientHandle, None)
        self._on_change(watch, raw)

    def _status_changed(self, client: Client, notification: StatusChangeNotification) -> None:
        status = notification.Status
        if client is self._client and status is not None and status.is_bad():
            self._on_broken(client, f"a subscription ended: {status.name}")

    def _problem(self, handle: int, watch: Watch, message: str) -> None:
        if self._problems.get(handle) != message:
            self._problems[handle] = message
            logger.warning("device %s resource %s: pushed value dropped: %s", watch.device, watch.resource, message)


class _Handler:
    """asyncua's callback interface for the subscriptions of one connection."""

    def __init__(self, subscriptions: Subscriptions, client: Client) -> None:
        self._subscriptions, self._client = subscriptions, client

    def datachange_notification(self, node: Node, value: Any, data: DataChangeNotif) -> None:
        self._subscriptions._changed(self._client, data.monitored_item)

    def status_change_notification(self, status: StatusChangeNotification) -> None:
        self._subscriptions._status_changed(self._client, status)


def _parameters(interval: float) -> CreateSubscriptionParameters:
    keepalive = max(1, math.ceil(KEEPALIVE / interval))
    parameters = CreateSubscriptionParameters()
    parameters.RequestedPublishingInterval = interval * 1000
    parameters.RequestedMaxKeepAliveCount = keepalive
    parameters.RequestedLifetimeCount = max(3 * keepalive, math.ceil(LIFETIME / interval))
    parameters.MaxNotificationsPerPublish = 0  # no limit
    parameters.PublishingEnabled = True
    return parameters


def _item_request(handle: int, watch: Watch) -> MonitoredItemCreateRequest:
    item = ReadValueId()
    item.NodeId = watch.node_id
    item.AttributeId = AttributeIds.Value
    parameters = MonitoringParameters()
    parameters.ClientHandle = handle
    parameters.SamplingInterval = watch.interval * 1000
    parameters.QueueSize = 1
    parameters.DiscardOldest = True
    request = MonitoredItemCreateRequest()
    request.ItemToMonitor = item
    request.MonitoringMode = MonitoringMode.Reporting
    request.RequestedParameters = parameters
    return request

"""Prometheus metrics of the device runtime, in a registry per gateway (so tests can run several)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

_POLL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RuntimeMetrics:
    """The runtime's metrics; per-device series are labelled with the device name."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only add noise
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.poll_seconds = Histogram(
            "yurt_iot_poll_duration_seconds", "Time to read a device's due resources", ["device"],
            buckets=_POLL_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "yurt_iot_device_requests", "Protocol requests sent to a device", ["device"], registry=r
        )
        self.errors = Counter(
            "yurt_iot_poll_errors", "Failed polls and readings by kind: connection, resource, reading",
            ["device", "kind"], registry=r,
        )  # fmt: skip
        self.late = Counter("yurt_iot_late_polls", "Poll slots skipped because a poll ran late", ["device"], registry=r)
        self.reconnects = Counter(
            "yurt_iot_device_reconnects", "Times a DOWN device came back UP", ["device"], registry=r
        )
        self.up = Gauge("yurt_iot_device_up", "1 while the device answers, 0 while it is DOWN", ["device"], registry=r)
        self.readings = Counter("yurt_iot_readings", "Readings put into events", ["device"], registry=r)
        self.events = Counter("yurt_iot_events", "Events accepted for delivery (spooled)", ["device"], registry=r)
        self.rejected = Counter(
            "yurt_iot_events_rejected", "Events not accepted because the spool was full", ["device"], registry=r
        )

    def device(self, name: str) -> DeviceMetrics:
        """The series of one device, looked up once: ``labels()`` costs more than the increment it precedes."""
        return DeviceMetrics(
            poll_seconds=self.poll_seconds.labels(name),
            requests=self.requests.labels(name),
            connection_errors=self.errors.labels(name, "connection"),
            resource_errors=self.errors.labels(name, "resource"),
            reading_errors=self.errors.labels(name, "reading"),
            late=self.late.labels(name),
            reconnects=self.reconnects.labels(name),
            up=self.up.labels(name),
            readings=self.readings.labels(name),
            events=self.events.labels(name),
            rejected=self.rejected.labels(name),
        )


@dataclass(frozen=True, slots=True)
class DeviceMetrics:
    """The labelled children of :class:`RuntimeMetrics` for one device."""

    poll_seconds: Histogram
    requests: Counter
    connection_errors: Counter
    resource_errors: Counter
    reading_errors: Counter
    late: Counter
    reconnects: Counter
    up: Gauge
    readings: Counter
    events: Counter
    rejected: Counter

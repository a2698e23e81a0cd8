"""Prometheus metrics of the controller core, in a registry passed in (so tests can run several managers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

__all__ = ["KubeMetrics"]

_RECONCILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class KubeMetrics:
    """Work queue, reconcile and leader-election series, labelled by queue/controller or Lease name."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only add noise
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("yurt_iot_workqueue_depth", "Keys waiting in a work queue", ["name"], registry=r)
        self.queue_adds = Counter("yurt_iot_workqueue_adds", "Keys added to a work queue", ["name"], registry=r)
        self.queue_retries = Counter(
            "yurt_iot_workqueue_retries",
            "Keys re-added with rate-limited backoff after a failure",
            ["name"],
            registry=r,
        )
        self.reconciles = Counter(
            "yurt_iot_reconciles", "Reconciles by outcome: success, requeue_after, error, terminal",
            ["controller", "result"], registry=r,
        )  # fmt: skip
        self.reconcile_seconds = Histogram(
            "yurt_iot_reconcile_duration_seconds", "Time spent in one reconcile", ["controller"],
            buckets=_RECONCILE_BUCKETS, registry=r,
        )  # fmt: skip
        self.leader = Gauge("yurt_iot_leader", "1 while this process holds the Lease, else 0", ["lease"], registry=r)

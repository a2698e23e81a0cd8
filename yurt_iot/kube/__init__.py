"""The controller core every yurt-iot controller is built on, in the shape of client-go/controller-runtime.

    KubeClient  --list+watch-->  Informer (Store + indexes)  --keys-->  WorkQueue  -->  Controller workers
                                                                                         |  reconcile(key)
    LeaderElector: only the Lease holder runs the controllers                            v
                                                                          patch_status_if_changed, finalizers

Everything runs on one asyncio loop; objects are JSON dicts as the API server sends them.
"""

from yurt_iot.kube.client import KubeClient, ObjectList, PatchType, ResourceClient, WatchEvent
from yurt_iot.kube.config import load_config
from yurt_iot.kube.controller import Controller, Predicate, Reconciler, Result, TerminalError, generation_changed
from yurt_iot.kube.errors import AlreadyExists, ApiError, Conflict, Gone, Invalid, KubeError, NotFound, Unreachable
from yurt_iot.kube.informer import EventHandler, Informer
from yurt_iot.kube.leader import LEASES, LeaderElector, LeadershipLost
from yurt_iot.kube.metrics import KubeMetrics
from yurt_iot.kube.objects import Obj, ObjectKey, apply_merge_patch, field_value, object_key
from yurt_iot.kube.patching import ensure_finalizer, patch_status_if_changed, remove_finalizer
from yurt_iot.kube.queue import ExponentialRateLimiter, RateLimiter, ShutDown, WorkQueue
from yurt_iot.kube.store import IndexFunc, Store, by_field, by_namespace

__all__ = [
    "LEASES",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Controller",
    "EventHandler",
    "ExponentialRateLimiter",
    "Gone",
    "IndexFunc",
    "Informer",
    "Invalid",
    "KubeClient",
    "KubeError",
    "KubeMetrics",
    "LeaderElector",
    "LeadershipLost",
    "NotFound",
    "Obj",
    "ObjectKey",
    "ObjectList",
    "PatchType",
    "Predicate",
    "RateLimiter",
    "Reconciler",
    "ResourceClient",
    "Result",
    "ShutDown",
    "Store",
    "TerminalError",
    "Unreachable",
    "WatchEvent",
    "WorkQueue",
    "apply_merge_patch",
    "by_field",
    "by_namespace",
    "ensure_finalizer",
    "field_value",
    "generation_changed",
    "load_config",
    "object_key",
    "patch_status_if_changed",
    "remove_finalizer",
]

"""The native backend of the per-pool device controller: Device CRs driven by yurt-iot's own device runtime.

A DeviceService whose `spec.baseAddress` is `native://...` (see `selection`) has no EdgeX behind it: its
Devices run in the pool's gateway (`controller`), their desired values are written to the devices and read
back into `status.deviceProperties`, their status follows the devices' health, and their readings go to MQTT
through the same spool and publisher as the standalone gateway (`service`).
"""

from yurt_iot.iot.native.controller import NativeController, NativeSettings
from yurt_iot.iot.native.selection import FINALIZER, NATIVE_SCHEME, is_native
from yurt_iot.iot.native.service import NativeOptions, RunningNative, native_backend, run_native

__all__ = [
    "FINALIZER",
    "NATIVE_SCHEME",
    "NativeController",
    "NativeOptions",
    "NativeSettings",
    "RunningNative",
    "is_native",
    "native_backend",
    "run_native",
]

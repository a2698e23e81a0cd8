"""yurt-iot: OpenYurt-compatible IoT device management for Kubernetes edge clusters."""

__version__ = "0.1.0"

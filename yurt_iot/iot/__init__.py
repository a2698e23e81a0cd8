"""The per-pool device controller: Device, DeviceService and DeviceProfile CRs kept in sync with EdgeX
(:mod:`yurt_iot.iot.edgex`) or with the native device runtime."""

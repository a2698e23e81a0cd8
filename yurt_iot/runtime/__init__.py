"""The device runtime: drivers, profile semantics, scheduling and telemetry."""

"""Built-in drivers, registered through the `yurt_iot.drivers` entry point like any third-party driver."""

"""Packaging that pyproject.toml cannot express: the built-in drivers in drivers/ install as `yurt_iot_drivers`."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["yurt_iot", "yurt_iot.*"]),
        "yurt_iot_drivers",
        *(f"yurt_iot_drivers.{name}" for name in find_packages("drivers")),
    ],
    package_dir={"yurt_iot_drivers": "drivers"},
)

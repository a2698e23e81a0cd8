"""`python -m yurt_iot.testing.edgex`: run the EdgeX contract double."""

from yurt_iot.testing.edgex.server import main

main()

"""Device simulators built on the real protocol stacks, for tests, benchmarks and the demo."""

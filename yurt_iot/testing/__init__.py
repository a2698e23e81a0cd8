"""Test infrastructure for yurt-iot: real external services on loopback only.

The integration tests run against the genuine programs the gateway talks to in production (a
kube-apiserver backed by etcd, the Mosquitto MQTT broker) instead of mocks, so that watch,
resourceVersion, RBAC and MQTT reconnect behaviour is the real thing. Everything here binds to
127.0.0.1 and picks free ports, so parallel runs and a developer's own services do not collide.
"""

"""The test infrastructure itself: a real kube-apiserver + etcd, a real Mosquitto, the network guard.

These tests pin down that the fixtures are the genuine services (version strings, server-side
semantics such as 409 conflicts, RBAC and CRD validation, MQTT delivery and broker restarts), so that
later integration tests can rely on them. All waits are for conditions, with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import queue
import secrets
import socket
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from yurt_iot.testing import netguard
from yurt_iot.testing.controlplane import UNPRIVILEGED_USER, ControlPlane
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import wait_for

EXPECTED_K8S = "v" + os.environ.get("K8S_VERSION", "1.34.4")
EXPECTED_ETCD = os.environ.get("ETCD_VERSION", "3.6.16")
TIMEOUT = 10.0


def wait_until(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    return wait_for(condition, timeout=timeout, what=what)


# --------------------------------------------------------------------------- control plane


def test_kube_apiserver_reports_expected_version(control_plane: ControlPlane, kube_api_client: Any) -> None:
    result = control_plane.kubectl("version", "-o", "json")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert versions["serverVersion"]["gitVersion"] == EXPECTED_K8S
    assert versions["clientVersion"]["gitVersion"] == EXPECTED_K8S
    assert k8s.VersionApi(kube_api_client).get_code().git_version == EXPECTED_K8S


def test_etcd_reports_expected_version(control_plane: ControlPlane) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", control_plane.etcd_port, timeout=5)
    try:
        conn.request("GET", "/version")
        version = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert version["etcdserver"] == EXPECTED_ETCD


def test_control_plane_listens_on_loopback_with_verified_tls(control_plane: ControlPlane) -> None:
    assert control_plane.url.startswith("https://127.0.0.1:")
    assert control_plane.etcd_url.startswith("http://127.0.0.1:")
    # The kubeconfig verifies the self-signed certificate rather than skipping verification.
    assert control_plane.ca_file is not None
    assert "certificate-authority:" in control_plane.kubeconfig.read_text()
    assert str(control_plane.dir).startswith("/dev/shm/")


def test_admin_token_is_system_masters(control_plane: ControlPlane) -> None:
    review = control_plane.kubectl_json("auth", "whoami")
    assert review["status"]["userInfo"]["username"] == "admin"
    assert "system:masters" in review["status"]["userInfo"]["groups"]


def test_wrong_token_is_rejected(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl("--token=not-a-valid-token", "get", "namespaces")
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "provide credentials" in result.stderr, result.stderr


def test_namespace_and_configmap_round_trip(kube_api_client: Any, namespace: str) -> None:
    core = k8s.CoreV1Api(kube_api_client)
    assert core.read_namespace(namespace).status.phase == "Active"

    data = {"plain": "value", "unicode": "Grüße ✓", "multiline": "line 1\nline 2\n"}
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "round-trip", "labels": {"app": "yurt-iot-test"}}, "data": data}
    )
    assert created.metadata.uid
    first_rv = created.metadata.resource_version

    read = core.read_namespaced_config_map("round-trip", namespace)
    assert read.data == data
    assert read.metadata.labels == {"app": "yurt-iot-test"}
    assert read.metadata.resource_version == first_rv

    listed = core.list_namespaced_config_map(namespace, label_selector="app=yurt-iot-test")
    assert [cm.metadata.name for cm in listed.items] == ["round-trip"]

    read.data["plain"] = "changed"
    updated = core.replace_namespaced_config_map("round-trip", namespace, read)
    assert updated.metadata.resource_version != first_rv

    # A write based on the stale resourceVersion must be refused: optimistic concurrency is real.
    stale = {"metadata": {"name": "round-trip", "resourceVersion": first_rv}, "data": {"plain": "stale"}}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("round-trip", namespace, stale)
    assert conflict.value.status == 409
    assert core.read_namespaced_config_map("round-trip", namespace).data["plain"] == "changed"

    core.delete_namespaced_config_map("round-trip", namespace)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("round-trip", namespace)
    assert gone.value.status == 404


def test_rbac_is_enforced(control_plane: ControlPlane, kube_api_client: Any, namespace: str) -> None:
    admin_core = k8s.CoreV1Api(kube_api_client)
    admin_core.create_namespaced_config_map(namespace, {"metadata": {"name": "visible"}, "data": {"k": "v"}})
    with control_plane.new_api_client(UNPRIVILEGED_USER) as api:
        core = k8s.CoreV1Api(api)
        with pytest.raises(ApiException) as denied:
            core.read_namespaced_config_map("visible", namespace)
        assert denied.value.status == 403

        rbac = k8s.RbacAuthorizationV1Api(kube_api_client)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "read-configmaps"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": UNPRIVILEGED_USER}],
            },
        )

        def readable() -> Any:
            try:
                return core.read_namespaced_config_map("visible", namespace)
            except ApiException as exc:
                if exc.status != 403:
                    raise
                return None

        # The RBAC authorizer reads roles through an informer, so the grant takes effect shortly after.
        assert wait_until(readable, what="RoleBinding to take effect").data == {"k": "v"}
        with pytest.raises(ApiException) as still_denied:
            core.list_namespace()
        assert still_denied.value.status == 403


GADGET_CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: gadgets.infratest.yurt-iot.example
    spec:
      group: infratest.yurt-iot.example
      scope: Namespaced
      names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
      versions:
        - name: v1alpha1
          served: true
          storage: true
          subresources: {status: {}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  required: [size]
                  properties:
                    size: {type: integer, minimum: 1}
    """
)


def test_install_crds_waits_until_established(
    control_plane: ControlPlane, kube_api_client: Any, namespace: str, tmp_path: Path
) -> None:
    assert control_plane.install_crds(tmp_path) == []  # no *.yaml: nothing to do
    (tmp_path / "gadget.yaml").write_text(GADGET_CRD)
    (tmp_path / "ignored.txt").write_text("not a manifest")

    assert control_plane.install_crds(tmp_path) == ["gadgets.infratest.yurt-iot.example"]

    crd = control_plane.kubectl_json("get", "crd", "gadgets.infratest.yurt-iot.example")
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"

    # Usable right away (no 404 race), and the schema is enforced by the real server.
    custom = k8s.CustomObjectsApi(kube_api_client)
    group, version = "infratest.yurt-iot.example", "v1alpha1"
    body = {"apiVersion": f"{group}/{version}", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 3}}
    custom.create_namespaced_custom_object(group, version, namespace, "gadgets", body)
    got = custom.get_namespaced_custom_object(group, version, namespace, "gadgets", "g1")
    assert got["spec"] == {"size": 3}
    invalid = {**body, "metadata": {"name": "g2"}, "spec": {"size": 0}}
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(group, version, namespace, "gadgets", invalid)
    assert rejected.value.status == 422

    # Re-applying the same directory is idempotent.
    assert control_plane.install_crds(tmp_path) == ["gadgets.infratest.yurt-iot.example"]


# --------------------------------------------------------------------------- mosquitto


class MqttProbe:
    """A paho-mqtt 2.x client that subscribes to `topic` on every (re)connect and queues messages."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.topic = topic
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connects: queue.Queue[int] = queue.Queue()
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self._count = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{secrets.token_hex(4)}")
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if not reason_code.is_failure:
            self.subscribed.clear()
            self._count += 1
            self.connects.put(self._count)
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if all(not code.is_failure for code in codes):
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        self.disconnected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def topic() -> str:
    return f"yurt-iot-test/{secrets.token_hex(6)}/data"


@pytest.fixture
def probe(mosquitto: Mosquitto, topic: str) -> Iterator[MqttProbe]:
    p = MqttProbe(mosquitto, topic)
    try:
        assert p.connects.get(timeout=TIMEOUT) == 1
        assert p.subscribed.wait(TIMEOUT), "SUBACK not received"
        yield p
    finally:
        p.close()


def publish(broker: Mosquitto, topic: str, payload: bytes) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{secrets.token_hex(4)}")
    publisher.connect(broker.host, broker.port, keepalive=10)
    publisher.loop_start()
    try:
        info = publisher.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), "PUBACK not received"
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def test_mqtt_subscriber_receives_published_message(mosquitto: Mosquitto, probe: MqttProbe, topic: str) -> None:
    assert mosquitto.host == "127.0.0.1"
    payload = json.dumps({"temperature": 21.5, "unit": "°C"}).encode()
    publish(mosquitto, topic, payload)
    message = probe.messages.get(timeout=TIMEOUT)
    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)
    publish(mosquitto, f"{topic}-other", b"not for the probe")
    publish(mosquitto, topic, b"second")
    assert probe.messages.get(timeout=TIMEOUT).payload == b"second"  # the other topic was not delivered


def test_mosquitto_restart_keeps_port_and_clients_reconnect(mosquitto: Mosquitto, probe: MqttProbe, topic: str) -> None:
    port = mosquitto.port
    try:
        mosquitto.stop()
        assert not mosquitto.running
        assert probe.disconnected.wait(TIMEOUT), "client did not notice the broker going away"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((mosquitto.host, port), timeout=2).close()

        mosquitto.start()
        assert mosquitto.running and mosquitto.port == port
        # The client, still configured with the old port, reconnects on its own and re-subscribes.
        assert probe.connects.get(timeout=TIMEOUT) == 2
        assert probe.subscribed.wait(TIMEOUT), "SUBACK after reconnect not received"
        publish(mosquitto, topic, b"after restart")
        assert probe.messages.get(timeout=TIMEOUT).payload == b"after restart"

        mosquitto.restart()
        assert mosquitto.port == port
        assert probe.connects.get(timeout=TIMEOUT) == 3
    finally:
        if not mosquitto.running:
            mosquitto.start()


# --------------------------------------------------------------------------- network guard


def test_guard_refuses_tcp_connect_to_non_loopback() -> None:
    assert netguard.installed()
    # 192.0.2.1 is TEST-NET-1; the guard raises before the connect system call is made.
    with (
        netguard.expected_refusals() as refused,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(netguard.NonLoopbackAddressError, match=r"192\.0\.2\.1"),
    ):
        sock.connect(("192.0.2.1", 9))
    assert len(refused) == 1


def test_guard_refuses_udp_sendto_to_non_loopback() -> None:
    with (
        netguard.expected_refusals() as refused,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(netguard.NonLoopbackAddressError),
    ):
        sock.sendto(b"x", ("192.0.2.1", 9))
    assert len(refused) == 1


def test_guard_refuses_ipv6_non_loopback() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6 sockets on this machine")
    with netguard.expected_refusals() as refused, sock:
        with pytest.raises(netguard.NonLoopbackAddressError):
            sock.connect(("2001:db8::1", 9))  # documentation prefix
        with pytest.raises(netguard.NonLoopbackAddressError):
            sock.connect(("::ffff:192.0.2.1", 9))  # IPv4-mapped non-loopback
    assert len(refused) == 2


def test_guard_refuses_name_resolution_and_wildcard_servers() -> None:
    with netguard.expected_refusals() as refused:
        with pytest.raises(netguard.NonLoopbackAddressError):
            socket.getaddrinfo("guard-test.invalid", 80)  # refused before any DNS query
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(netguard.NonLoopbackAddressError):
            sock.bind(("0.0.0.0", 18830))
    assert len(refused) == 2


def test_guard_refusal_surfaces_through_libraries_and_is_recorded() -> None:
    """Libraries may wrap or swallow the refusal; it is recorded anyway (the autouse fixture checks)."""
    with netguard.expected_refusals() as refused:
        with pytest.raises(httpx.ConnectError, match="test network guard refused"):
            httpx.get("http://192.0.2.1:9/", timeout=2)
        with pytest.raises(netguard.NonLoopbackAddressError):
            asyncio.run(asyncio.open_connection("192.0.2.1", 9))
        with contextlib.suppress(OSError):  # like a library that swallows connection errors
            socket.create_connection(("192.0.2.1", 9), timeout=1)
    assert len(refused) == 3


def test_guard_allows_loopback() -> None:
    with netguard.expected_refusals() as refused:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            port = server.getsockname()[1]
            with socket.create_connection(("localhost", port), timeout=2):
                pass
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        # A client socket bound to the wildcard with port 0 (what paho-mqtt does) is fine too.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.bind(("", 0))
    assert refused == []


def _retained(broker: Mosquitto, topic: str) -> bytes | None:
    """The retained message a fresh subscriber receives on `topic`, or None if there is none.

    No waiting for something that might not come: after subscribing, the client publishes a marker
    to the same topic. The broker queues a retained message while handling the SUBSCRIBE, i.e. before
    it sees the marker, so once the marker arrives everything retained has arrived too.
    """
    messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"retained-{secrets.token_hex(4)}")
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: messages.put(m)
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        assert subscribed.wait(TIMEOUT), "SUBACK not received"
        client.publish(topic, b"marker", qos=1)
        retained = None
        while (message := messages.get(timeout=TIMEOUT)).payload != b"marker":
            assert message.retain, message.payload
            retained = message.payload
        return retained
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("persistence", [False, True])
def test_mosquitto_persistence_only_when_asked(persistence: bool, topic: str) -> None:
    with Mosquitto(persistence=persistence) as broker:
        publish_retained = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{secrets.token_hex(4)}")
        publish_retained.connect(broker.host, broker.port, keepalive=10)
        publish_retained.loop_start()
        try:
            info = publish_retained.publish(topic, b"retained", qos=1, retain=True)
            info.wait_for_publish(timeout=TIMEOUT)
        finally:
            publish_retained.disconnect()
            publish_retained.loop_stop()
        assert _retained(broker, topic) == b"retained"

        broker.restart()
        assert _retained(broker, topic) == (b"retained" if persistence else None)

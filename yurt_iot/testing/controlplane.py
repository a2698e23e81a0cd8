"""A real Kubernetes control plane (etcd + kube-apiserver) for integration tests.

Why not a mock: the gateway depends on watch semantics, resourceVersion conflicts, server-side apply,
CRD validation and RBAC, and every Python mock gets some of those wrong. Like controller-runtime's
envtest we start the genuine binaries (built from the Go module proxy by ``scripts/build-control-plane``)
as plain subprocesses, with no kube-controller-manager. That means: no garbage collection through
ownerReferences, namespaces stay ``Terminating`` after deletion, and no ServiceAccount tokens are
minted. Everything else a client sees (CRDs, status subresources, finalizers, RBAC) is the real thing.

Everything listens on 127.0.0.1 only. etcd keeps its data on tmpfs with fsync disabled, because
durability is worthless for a throw-away test cluster and fsync dominates etcd's latency on CI disks.

Authentication uses a static token file: one token for an admin in ``system:masters`` (what the tests
and ``kubectl`` use) plus any extra users a test asks for, e.g. an unprivileged user to exercise RBAC.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import yaml

from yurt_iot.testing.ports import LOOPBACK, free_ports
from yurt_iot.testing.process import LoggedProcess

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ADMIN_USER", "UNPRIVILEGED_USER", "ControlPlane", "ControlPlaneError", "TokenUser"]

ADMIN_USER = "admin"
#: Conventional name for a token user without any group (beyond system:authenticated), for RBAC tests.
UNPRIVILEGED_USER = "unprivileged"

#: kube-apiserver can be slow on contended CI runners while RBAC bootstrap retries (31-35 s has been
#: reported upstream, kubernetes PR #137743), so the default start-up deadline is generous.
DEFAULT_STARTUP_TIMEOUT = 60.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or driven; the message carries the relevant logs."""


@dataclass(frozen=True)
class TokenUser:
    """A user known to kube-apiserver through the static token file."""

    name: str
    token: str
    groups: Sequence[str] = ()
    uid: str = ""


def _tmp_root() -> str | None:
    """Prefer tmpfs for everything (etcd's data dir above all): /dev/shm when it is usable."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None


def _generate_rsa_key(path: Path) -> None:
    """Write a 2048-bit RSA private key (PEM) for signing service-account tokens.

    kube-apiserver refuses to start without service-account issuer flags. Uses the ``cryptography``
    package when importable (it is a dependency of asyncua), otherwise ``openssl genrsa``.
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True, timeout=60)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                encoding=serialization.Encoding.PEM,
                format=serialization.PrivateFormat.TraditionalOpenSSL,
                encryption_algorithm=serialization.NoEncryption(),
            )
        )
    path.chmod(0o600)


def _unverified_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ControlPlane:
    """etcd + kube-apiserver as subprocesses on 127.0.0.1, with a kubeconfig for an admin token.

    Usage::

        with ControlPlane(bin_dir) as cp:
            cp.install_crds(Path("crds"))
            cp.kubectl("get", "ns")

    ``bin_dir`` must hold ``etcd``, ``kube-apiserver`` and ``kubectl`` (see scripts/build-control-plane).
    All state (etcd data, certificates, token file, kubeconfig, process logs) lives in one temporary
    directory on tmpfs that :meth:`stop` removes unless ``keep_files`` is true.
    """

    def __init__(
        self,
        bin_dir: Path | str,
        *,
        users: Sequence[TokenUser] = (),
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        keep_files: bool = False,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.etcd_bin = self.bin_dir / "etcd"
        self.apiserver_bin = self.bin_dir / "kube-apiserver"
        self.kubectl_bin = self.bin_dir / "kubectl"
        for binary in (self.etcd_bin, self.apiserver_bin, self.kubectl_bin):
            if not os.access(binary, os.X_OK):
                raise ControlPlaneError(f"{binary} is missing or not executable (run scripts/build-control-plane)")
        self.startup_timeout = startup_timeout
        self.keep_files = keep_files
        self.extra_apiserver_args = list(extra_apiserver_args)

        self.token = secrets.token_urlsafe(24)
        self.admin = TokenUser(ADMIN_USER, self.token, ("system:masters",), "admin-uid")
        self.users: dict[str, TokenUser] = {ADMIN_USER: self.admin}
        for user in users:
            if user.name in self.users:
                raise ValueError(f"duplicate token user {user.name!r}")
            self.users[user.name] = user

        self._dir: Path | None = None
        self._etcd: LoggedProcess | None = None
        self._apiserver: LoggedProcess | None = None
        self.etcd_port = 0
        self.etcd_peer_port = 0
        self.port = 0
        self.ca_file: Path | None = None
        #: Seconds from spawning each process until it reported healthy (etcd /health, apiserver /readyz).
        self.startup_seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ properties

    @property
    def dir(self) -> Path:
        """The temporary directory holding all state and logs (only while started)."""
        if self._dir is None:
            raise ControlPlaneError("control plane is not started")
        return self._dir

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://{LOOPBACK}:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def etcd_log(self) -> Path:
        return self.dir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.dir / "kube-apiserver.log"

    @property
    def verify_tls(self) -> bool:
        """Whether clients verify the server certificate (false only if the self-signed CA did not work)."""
        return self.ca_file is not None

    @property
    def running(self) -> bool:
        return all(p is not None and p.running for p in (self._etcd, self._apiserver))

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd, then kube-apiserver, wait until both are healthy and write the kubeconfig.

        Ports are probed free and then handed to the processes, so another process can grab one in
        between; in that unlikely case the start is retried with fresh ports.
        """
        if self._dir is not None:
            raise ControlPlaneError("control plane already started")
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except ControlPlaneError as exc:
                self.stop()
                if attempt == attempts or "address already in use" not in str(exc):
                    raise
            except BaseException:
                self.stop()  # no orphaned processes, whatever went wrong (Ctrl-C included)
                raise

    def _start_once(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="yurt-iot-cp-", dir=_tmp_root()))
        atexit.register(self.stop)
        self.etcd_port, self.etcd_peer_port, self.port = free_ports(3)
        self.ca_file = None

        self._etcd = self._spawn("etcd", self.etcd_log, self._etcd_args())
        self._wait_healthy(self._etcd, self._etcd_healthy, deadline=time.monotonic() + self.startup_timeout)

        self._write_auth_files()
        self._apiserver = self._spawn("kube-apiserver", self.apiserver_log, self._apiserver_args())
        self._wait_healthy(self._apiserver, self._apiserver_ready, deadline=time.monotonic() + self.startup_timeout)
        self.ca_file = self._usable_ca()
        self._write_kubeconfig(self.kubeconfig, self.token)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop kube-apiserver then etcd (SIGTERM, SIGKILL after `timeout`) and remove the temp dir.

        kube-apiserver goes first so it does not spend its shutdown retrying a vanished etcd. Safe to
        call more than once, and registered with atexit so an aborted test run leaves no processes.
        """
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop(timeout)
        self._apiserver = self._etcd = None
        if self._dir is not None:
            if not self.keep_files:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    # ------------------------------------------------------------------ process plumbing

    def _spawn(self, name: str, log_path: Path, args: list[str]) -> LoggedProcess:
        return LoggedProcess.spawn(name, args, log_path, cwd=self.dir, env=self._child_env())

    def _child_env(self) -> dict[str, str]:
        """Environment for child processes: no proxy may ever see loopback traffic."""
        env = dict(os.environ)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        return env

    def _wait_healthy(self, proc: LoggedProcess, probe: Callable[[], str | None], *, deadline: float) -> None:
        """Poll `probe()` (returns None when healthy, else a reason) until `deadline`.

        Fails fast, with the tail of the process log, if the process exits.
        """
        delay = 0.05
        while True:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code} during start-up; last lines of its log:\n{proc.tail(60)}"
                )
            reason = probe()
            if reason is None:
                self.startup_seconds[proc.name] = round(time.monotonic() - proc.started, 3)
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneError(
                    f"{proc.name} not healthy after {self.startup_timeout:.0f} s ({reason}); "
                    f"last lines of its log:\n{proc.tail(60)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _etcd_args(self) -> list[str]:
        client = self.etcd_url
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        return [
            str(self.etcd_bin),
            "--name=default",
            f"--data-dir={self.dir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        d = self.dir
        return [
            str(self.apiserver_bin),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.port}",
            f"--cert-dir={d / 'certs'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.key'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--token-auth-file={d / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            # The ServiceAccount admission plugin requires each namespace's "default" service account,
            # which only kube-controller-manager creates; we do not run it.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # The "kubernetes" Service endpoints would point at 127.0.0.1, which endpoint validation
            # rejects (loopback); without a reconciler the apiserver does not log that error every 10 s.
            "--endpoint-reconciler-type=none",
            *self.extra_apiserver_args,
        ]

    def _write_auth_files(self) -> None:
        (self.dir / "certs").mkdir(mode=0o700, exist_ok=True)
        _generate_rsa_key(self.dir / "sa.key")
        lines = []
        for user in self.users.values():
            for value in (user.name, user.token, user.uid, *user.groups):
                if any(c in value for c in ',"\n'):
                    raise ValueError(f"token user field {value!r} must not contain commas, quotes or newlines")
            groups = ",".join(user.groups)
            lines.append(f'{user.token},{user.name},{user.uid or user.name},"{groups}"')
        tokens = self.dir / "tokens.csv"
        tokens.write_text("\n".join(lines) + "\n")
        tokens.chmod(0o600)

    # ------------------------------------------------------------------ health probes

    def _etcd_healthy(self) -> str | None:
        conn = http.client.HTTPConnection(LOOPBACK, self.etcd_port, timeout=2)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return f"GET /health: {exc!r}"
        finally:
            conn.close()
        try:
            healthy = resp.status == 200 and json.loads(body).get("health") == "true"
        except ValueError:
            healthy = False
        return None if healthy else f"GET /health: {resp.status} {body.strip()[:200]}"

    def _get(self, path: str, ctx: ssl.SSLContext, token: str | None = None) -> tuple[int, str]:
        conn = http.client.HTTPSConnection(LOOPBACK, self.port, timeout=5, context=ctx)
        try:
            headers = {"Authorization": f"Bearer {token or self.token}"}
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()

    def _apiserver_ready(self) -> str | None:
        try:
            status, body = self._get("/readyz", _unverified_tls())
        except (OSError, http.client.HTTPException) as exc:
            return f"GET /readyz: {exc!r}"
        if status == 200 and body.strip() == "ok":
            return None
        # A failing /readyz lists its failed checks only in verbose mode; fetch that for the message.
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = self._get("/readyz?verbose", _unverified_tls())
            body = "\n".join(line for line in body.splitlines() if "[-]" in line) or body
        return f"GET /readyz: {status} {body.strip()[:1000]}"

    def _usable_ca(self) -> Path | None:
        """The self-signed bundle kube-apiserver wrote into its cert-dir, if TLS verification works.

        The bundle holds the serving certificate (SANs include 127.0.0.1 via --advertise-address) and
        its CA. Verifying is better than skipping: skip-verify makes urllib3 warn on every request,
        and pytest turns warnings into errors. Falls back to skip-verify if verification fails.
        """
        bundle = self.dir / "certs" / "apiserver.crt"
        if not bundle.is_file():
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(bundle))
            status, _ = self._get("/readyz", ctx)
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return None
        return bundle if status == 200 else None

    # ------------------------------------------------------------------ clients

    def _write_kubeconfig(self, path: Path, token: str, user: str = ADMIN_USER) -> None:
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_file is not None:
            cluster["certificate-authority"] = str(self.ca_file)
        else:
            cluster["insecure-skip-tls-verify"] = True
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "yurt-iot-test", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "yurt-iot-test", "context": {"cluster": "yurt-iot-test", "user": user}}],
            "current-context": "yurt-iot-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig for one of the token users (written on first use), e.g. to test RBAC."""
        path = self.dir / f"kubeconfig-{user}"
        if not path.exists():
            self._write_kubeconfig(path, self.users[user].token, user)
        return path

    def kubectl(
        self, *args: str, user: str = ADMIN_USER, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane; never raises on a non-zero exit.

        kubectl's discovery cache goes to the temp dir: the default ~/.kube/cache is keyed by
        host:port, and a port reused by a later run with other CRDs would see stale discovery.
        """
        env = self._child_env()
        env["KUBECONFIG"] = str(self.kubeconfig if user == ADMIN_USER else self.kubeconfig_for(user))
        env["KUBECACHEDIR"] = str(self.dir / "kube-cache")
        return subprocess.run(
            [str(self.kubectl_bin), *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )

    def kubectl_json(self, *args: str, user: str = ADMIN_USER) -> Any:
        """Run ``kubectl ARGS -o json`` and return the parsed output; raises on failure."""
        result = self.kubectl(*args, "-o", "json", user=user)
        if result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return json.loads(result.stdout)

    def new_api_client(self, user: str = ADMIN_USER) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for one of the token users (close it when done)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": self.users[user].token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        configuration.verify_ssl = self.ca_file is not None
        configuration.ssl_ca_cert = str(self.ca_file) if self.ca_file is not None else None
        return client.ApiClient(configuration)

    # ------------------------------------------------------------------ CRDs

    def install_crds(self, directory: Path | str, timeout: float = 60.0) -> list[str]:
        """Apply every manifest in `directory` server-side and wait until all CRDs are Established.

        Returns the names of the CRDs applied (empty if the directory holds no ``*.yaml`` file).
        Waiting matters: a CRD is accepted before its REST endpoint serves, and a custom resource
        created in between is rejected with 404.
        """
        directory = Path(directory)
        if not any(directory.glob("*.yaml")):
            return []
        result = self.kubectl(
            "apply", "--server-side", "--field-manager=yurt-iot-tests", "-f", str(directory), "-o", "name"
        )
        if result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl apply --server-side -f {directory} failed ({result.returncode}):\n"
                f"{result.stderr}{result.stdout}"
            )
        prefix = "customresourcedefinition.apiextensions.k8s.io/"
        names = [line[len(prefix) :] for line in result.stdout.split() if line.startswith(prefix)]
        self.wait_crds_established(names, timeout)
        return names

    def wait_crds_established(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Wait until every named CRD has condition Established=True, or raise with their conditions."""
        if not names:
            return
        deadline = time.monotonic() + timeout
        pending: Mapping[str, Any] = {}
        while True:
            items = self.kubectl_json("get", "customresourcedefinitions", *names)
            items = items.get("items", [items]) if isinstance(items, dict) else items
            pending = {
                item["metadata"]["name"]: item.get("status", {}).get("conditions", [])
                for item in items
                if not any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in item.get("status", {}).get("conditions", [])
                )
            }
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ControlPlaneError(f"CRDs not Established after {timeout:.0f} s: {json.dumps(pending, indent=1)}")
            time.sleep(0.2)

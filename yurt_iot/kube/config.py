"""Where the API server is and how to authenticate, read with the official client's loaders.

We reuse `kubernetes.config` rather than parse kubeconfigs ourselves: it knows every auth flavour
(tokens, client certificates, exec plugins, in-cluster service-account tokens that rotate) and writes
inline certificate data to files. Its `Configuration` is then turned into httpx settings here.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config

__all__ = ["context_namespace", "load_config"]

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def load_config(kubeconfig: str | Path | None = None, *, context: str | None = None) -> Any:
    """A `kubernetes.client.Configuration` for the cluster.

    With no `kubeconfig`, a process in a pod (KUBERNETES_SERVICE_HOST set) uses its service account and
    anything else uses $KUBECONFIG or ~/.kube/config, as kubectl would. Reads small files only, so it is
    fine to call once at start-up on the event loop.
    """
    configuration = k8s.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration


def context_namespace(kubeconfig: str | Path | None = None, *, context: str | None = None) -> str | None:
    """The namespace kubectl would default to: the context's (the current one unless named), or in a pod with
    no kubeconfig its service account's; None when neither names one (callers then use "default")."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if _SERVICE_ACCOUNT_NAMESPACE.is_file() else None
    contexts, current = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig is not None else None
    )
    chosen = current if context is None else next((c for c in contexts if c.get("name") == context), None)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def ssl_context(configuration: Any) -> ssl.SSLContext:
    """TLS settings of a Configuration: its CA (or none at all if verification is off) and client certificate."""
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class ConfigurationAuth(httpx.Auth):
    """Bearer token from the Configuration, asked for on every request.

    Asking each time matters: in-cluster tokens rotate, and the loaders install a refresh hook that
    re-reads the token file (at most once a minute) when the Configuration is asked for its key.
    """

    def __init__(self, configuration: Any) -> None:
        self._configuration = configuration

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        bearer = self._configuration.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            request.headers["Authorization"] = bearer["value"]
        yield request

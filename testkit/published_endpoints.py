"""The stacks' public endpoints as Convai would reach them, served on 127.0.0.1 over TLS.

One server answers for every host name, as an ingress controller in front of vLLM does, and
takes what it serves from the cluster at each request: the Ingress whose rule names the request's
Host (or the HTTPRoute that names it, once accepted with its backend resolved), the Service it
routes to, that Service's Ready pods; from the first pod's container, the served model name
(`--served-model-name`) and the API keys (`--api-key $(VAR)...`, each variable read from the
Secret it names, as the kubelet expands it; or the `api-key` list of the `--config` file, read
from the Secret volume mounted there, as vLLM's parser reads it). So the endpoint preflight passes
only if the program published the host, wired the Service to the pods and gave the pods the key
it registers with Convai. No Ingress or route for the host: 404, as ingress-nginx's default
backend; no Ready pod: 503. The OpenAI replies are openai_server's vLLM.

Processes reach it under the stacks' host names through testkit/resolver_override.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from .kube import ControlPlane
from .openai_server import EndpointBehaviour, build_app, serve_app
from .tls import TestCA

RESOLVER_OVERRIDE = Path(__file__).resolve().parent / "resolver_override"


@dataclass
class Request:
    host: str
    path: str
    answer: int


@dataclass
class PublishedEndpoints:
    cluster: ControlPlane
    requests: list[Request] = field(default_factory=list)

    def behaviour(self, host: str) -> EndpointBehaviour | int:
        """What the vLLM behind `host` would be, or the HTTP status the controller answers."""
        published = self._backend(host)
        if published is None:
            return 404
        namespace, backend = published
        selector = _service(self.cluster, namespace, backend)["spec"]["selector"]
        ready = [p for p in self.cluster.objects("pods", namespace) if _serves(p, selector)]
        if not ready:
            return 503
        pod = ready[0]["spec"]
        (container,) = pod["containers"]
        keys = _api_keys(self.cluster, namespace, pod)
        return EndpointBehaviour(
            flavour="vllm",
            api_key=keys[0] if keys else None,
            more_keys=tuple(keys[1:]),
            served=_served_names(container["args"]),
        )

    def _backend(self, host: str) -> tuple[str, str] | None:
        """(namespace, Service) that the Ingress or serving HTTPRoute for `host` routes to."""
        for ingress in self.cluster.objects("ingresses"):
            if any(r.get("host") == host for r in ingress["spec"].get("rules", [])):
                (rule,) = ingress["spec"]["rules"]
                service = rule["http"]["paths"][0]["backend"]["service"]["name"]
                return ingress["metadata"]["namespace"], service
        for route in self.cluster.objects("httproutes"):
            if host in route["spec"].get("hostnames", []) and _serving(route):
                (rule,) = route["spec"]["rules"]
                return route["metadata"]["namespace"], rule["backendRefs"][0]["name"]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode().split(":")[0]
        found = await asyncio.to_thread(self.behaviour, host)
        if isinstance(found, int):
            self.requests.append(Request(host, scope["path"], found))
            await PlainTextResponse(f"HTTP {found}", status_code=found)(scope, receive, send)
            return

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.requests.append(Request(host, scope["path"], message["status"]))
            await send(message)

        await build_app(found)(scope, receive, record)


def _serving(route: dict[str, Any]) -> bool:
    """A Gateway serves a route once its controller has accepted it and resolved its backend;
    an unresolved backend answers 500 (Gateway API, HTTPRoute backendRefs)."""
    held = {
        c["type"]
        for parent in route.get("status", {}).get("parents", [])
        for c in parent.get("conditions", [])
        if c["status"] == "True"
    }
    return {"Accepted", "ResolvedRefs"} <= held


def _service(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return next(s for s in cluster.objects("services", namespace) if s["metadata"]["name"] == name)


def _serves(pod: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels", {})
    conditions = pod.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and all(labels.get(k) == v for k, v in selector.items())


def _served_names(args: list[str]) -> list[str]:
    """The values after `--served-model-name`: vLLM answers to each."""
    return _values_of("--served-model-name", args)


def _values_of(flag: str, args: list[str]) -> list[str]:
    values = []
    for arg in args[args.index(flag) + 1 :]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


def _api_keys(cluster: ControlPlane, namespace: str, pod: dict[str, Any]) -> list[str]:
    """The keys vLLM accepts: the values after `--api-key`, each `$(VAR)` expanded from the
    container's environment; else the `api-key` list of the `--config` file, read from the
    Secret volume mounted there (vLLM's parser inserts the file's arguments before the command
    line's, so a command-line `--api-key` wins)."""
    (container,) = pod["containers"]
    args: list[str] = container["args"]
    if "--api-key" in args:
        return [
            _expanded(cluster, namespace, container, arg) for arg in _values_of("--api-key", args)
        ]
    if "--config" not in args:
        return []
    (path,) = _values_of("--config", args)
    config = yaml.safe_load(_mounted_file(cluster, namespace, pod, path))
    return [str(key) for key in config.get("api-key", [])]


def _mounted_file(cluster: ControlPlane, namespace: str, pod: dict[str, Any], path: str) -> str:
    """A file of a Secret volume as the kubelet projects it: the volume mounted at the file's
    directory, the Secret it names, the key whose item path is the file's name."""
    directory, name = path.rsplit("/", 1)
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    source = volume["secret"]
    items = source.get("items", [{"key": name, "path": name}])
    (key,) = [item["key"] for item in items if item["path"] == name]
    return _secret_value(cluster, namespace, source["secretName"], key)


def _secret_value(cluster: ControlPlane, namespace: str, name: str, key: str) -> str:
    (secret,) = [s for s in cluster.objects("secrets", namespace) if s["metadata"]["name"] == name]
    return base64.b64decode(secret["data"][key]).decode()


def _expanded(cluster: ControlPlane, namespace: str, container: dict[str, Any], arg: str) -> str:
    if not (arg.startswith("$(") and arg.endswith(")")):
        return arg
    (variable,) = [v for v in container.get("env", []) if v["name"] == arg[2:-1]]
    reference = variable["valueFrom"]["secretKeyRef"]
    return _secret_value(cluster, namespace, reference["name"], reference["key"])


@contextmanager
def publish(
    cluster: ControlPlane, ca: TestCA, hosts: tuple[str, ...]
) -> Iterator[tuple[PublishedEndpoints, dict[str, str]]]:
    """Serves `hosts` with certificates of `ca`; yields the server and the environment that
    sends a process's calls to those hosts there (and refuses every other name)."""
    endpoints = PublishedEndpoints(cluster)
    with serve_app(endpoints, ca.issue("published-endpoints", hosts=hosts)) as url:
        address = url.removeprefix("https://").removesuffix("/v1")
        yield (
            endpoints,
            {
                "CONVAI_TEST_HOSTS": ",".join(f"{host}={address}" for host in hosts),
                "PYTHONPATH": str(RESOLVER_OVERRIDE),
                "SSL_CERT_FILE": str(ca.certificate),
            },
        )

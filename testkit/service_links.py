"""The variables the kubelet injects into a pod's containers for the Services of its namespace.

Mocks and kwok run no kubelet, so tests derive them here, after the kubelet's own rules
(pkg/kubelet/envvars: `FromServices` and `makeLinkVariables`, applied by `getServiceEnvVarMap`
only when the pod's `enableServiceLinks` is not false).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def env_name(name: str) -> str:
    """A Service or port name as the kubelet spells it in a variable name."""
    return name.upper().replace("-", "_")


def _has_cluster_ip(spec: Mapping[str, Any]) -> bool:
    # An unset clusterIP is assigned by the API server; headless and ExternalName get none.
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") not in ("None", "")


def service_variables(service: Mapping[str, Any]) -> set[str]:
    """Every variable one Service puts into the pods of its namespace."""
    spec = service["spec"]
    if not _has_cluster_ip(spec):
        return set()
    prefix = env_name(service["metadata"]["name"])
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in spec["ports"]:
        if port.get("name"):
            names.add(f"{prefix}_SERVICE_PORT_{env_name(port['name'])}")
        link = f"{prefix}_PORT_{int(port['port'])}_{str(port.get('protocol') or 'TCP').upper()}"
        names |= {link, f"{link}_PROTO", f"{link}_PORT", f"{link}_ADDR"}
    return names


def injected_variables(
    pod_spec: Mapping[str, Any], namespace_services: Iterable[Mapping[str, Any]]
) -> set[str]:
    """What the kubelet adds to each container of a pod with this spec."""
    if pod_spec.get("enableServiceLinks", True) is False:
        return set()
    return set().union(*(service_variables(service) for service in namespace_services))


VLLM_VARIABLES_SET_ON_PURPOSE = frozenset(
    {"VLLM_MAX_N_SEQUENCES", "VLLM_NO_USAGE_STATS", "VLLM_CACHE_ROOT"}
)
"""The only VLLM_* variables the program gives vLLM: vLLM reads every VLLM_* as its own setting."""


def vllm_variables_seen(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    namespace_services: Iterable[Mapping[str, Any]],
) -> set[str]:
    """The VLLM_* variables a container sees: its own and those the kubelet injects."""
    own = {variable["name"] for variable in container.get("env") or []}
    seen = own | injected_variables(pod_spec, namespace_services)
    return {name for name in seen if name.startswith("VLLM_")}

"""The Kubernetes options of a vLLM endpoint: value types (quantities, names, networks, label
maps) and the option models (tolerations, metrics, autoscaling, the Gateway).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, field_validator, model_validator

from convai_provider.resources.fields import BaseUrl
from convai_stack.schema_base import StrictModel, matching

Quantity = Annotated[
    StrictStr,
    matching(
        r"[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?",
        "a Kubernetes quantity such as 8, 500m or 32Gi",
    ),
]
Hostname = Annotated[
    StrictStr,
    matching(
        r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a DNS name such as llama.example.com, without scheme or path",
    ),
]
DnsLabel = Annotated[
    StrictStr,
    matching(
        r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
        "lowercase letters, digits and '-' (a DNS label), such as llama-8b",
    ),
]


LabelMap = dict[StrictStr, StrictStr]


def _network(value: str) -> str:
    """A network as Kubernetes' ipBlock takes it, written the one way Python and Kubernetes both
    print it: a stray host bit, a netmask or a bare address is refused, not guessed at."""
    try:
        network = ipaddress.ip_network(value)  # strict: host bits must be zero
    except ValueError:
        raise ValueError(
            "must be an IPv4 or IPv6 network such as 10.0.0.0/8 or fc00::/7, its host bits zero "
            f"(got {value!r})"
        ) from None
    if str(network) != value:
        raise ValueError(
            f"must be written {str(network)!r}: the network's canonical form, its prefix length "
            "stated"
        )
    return value


IpNetwork = Annotated[StrictStr, AfterValidator(_network)]
EGRESS_DENIED = (
    "169.254.0.0/16",  # link-local: the cloud metadata service (node credentials), EKS Pod Identity
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # shared address space, which some clusters use for pods
    "fc00::/7",  # unique local IPv6: the private range of dual-stack clusters
    "fe80::/10",  # IPv6 link-local
    "fd00:ec2::254/128",  # EC2's IPv6 metadata address (inside fc00::/7, named for the reader)
)
"""What vLLM's HTTPS egress may not reach: the link-local metadata addresses, and the private ranges
where the cluster's pods, Services, nodes and the company network live."""


def is_ipv6(network: str) -> bool:
    return ipaddress.ip_network(network).version == 6


class Toleration(StrictModel):
    """A node taint the vLLM pods tolerate: Kubernetes' toleration, its fields in snake_case."""

    key: StrictStr | None = None
    """The taint's key; left out (with operator Exists), every taint is tolerated."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists: any value of the key; Equal: the value given."""
    value: StrictStr | None = None
    """The taint's value, with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect tolerated; left out, every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """With effect NoExecute: how long a replica stays on a node after the taint appears."""

    @model_validator(mode="after")
    def _as_kubernetes_accepts(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("value must be left out when operator is Exists")
        if self.key is None and self.operator != "Exists":
            raise ValueError("without a key, operator must be Exists (tolerates every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds applies only to effect NoExecute")
        return self


GPU_TOLERATIONS = (Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),)
"""GPU nodes are usually tainted nvidia.com/gpu (the NVIDIA GPU operator, GKE, EKS's GPU AMIs)."""


FqdnPattern = Annotated[
    StrictStr,
    matching(
        r"(?:\*\*?\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a DNS name such as huggingface.co, *.name for one label under it, or **.name for any "
        'depth on a Cilium that supports it (docs/vllm.md, "FQDN egress allow-list")',
    ),
]
HF_HUB_FQDNS = (
    "huggingface.co",
    "cdn-lfs.huggingface.co",
    "cdn-lfs.hf.co",
    "cdn-lfs-us-1.hf.co",
    "cas-bridge.xethub.hf.co",
    "cas-server.xethub.hf.co",
    "transfer.xethub.hf.co",
    "*.aws.cdn.hf.co",
)
"""The Hugging Face hub and the hosts it redirects downloads to (its LFS CDN and Xet storage),
named so that every Cilium version matches them: its `*` never crosses a dot, so `*.hf.co` misses
`cas-bridge.xethub.hf.co`. From public egress lists, unverified on a Cilium cluster here
(docs/vllm.md says how to confirm them with Hubble)."""


class MetricsScrape(StrictModel):
    """Who scrapes vLLM's /metrics: the scraper's pods are admitted to vLLM's port by their
    labels in their namespace, never a whole namespace (the port also serves vLLM's unguarded
    routes). With the Prometheus operator, a PodMonitor tells it what to scrape."""

    scraper_namespace: DnsLabel = "monitoring"
    """The namespace of the Prometheus pods that scrape vLLM."""
    scraper_pod_labels: LabelMap = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"}
    )
    """Labels of the Prometheus pods (the operator's own label on every Prometheus it runs)."""
    pod_monitor: StrictBool = True
    """Declare a PodMonitor (monitoring.coreos.com/v1): the cluster runs the Prometheus operator."""
    pod_monitor_labels: LabelMap = Field(default_factory=dict)
    """Labels the Prometheus's podMonitorSelector picks, e.g. {release: kube-prometheus-stack}."""

    @model_validator(mode="after")
    def _scraper_is_named(self) -> MetricsScrape:
        if not self.scraper_pod_labels:
            raise ValueError(
                "scraper_pod_labels must name the scraper's pods: empty, every pod of "
                f"{self.scraper_namespace} could reach vLLM's unguarded routes"
            )
        return self


class Autoscaling(StrictModel):
    """KEDA scales the replicas on the requests in vLLM (running and waiting), read from
    Prometheus."""

    min_replicas: int = Field(ge=0, le=64)
    """The fewest replicas, from 1: scaling to zero is not offered (at zero no vLLM reports a
    queue, so nothing would scale it up again)."""
    max_replicas: int = Field(ge=1, le=64)
    """The most replicas, at least min_replicas."""
    target_load: int = Field(default=16, ge=1)
    """Requests per replica, running plus waiting (vllm:num_requests_running and
    vllm:num_requests_waiting), KEDA aims at."""
    prometheus_url: BaseUrl
    """The Prometheus KEDA queries, e.g. http://prometheus-operated.monitoring.svc:9090."""

    @model_validator(mode="before")
    @classmethod
    def _queue_depth_is_replaced(cls, values: Any) -> Any:
        if isinstance(values, dict) and "queue_depth" in values:
            raise ValueError(
                "queue_depth is replaced by target_load: requests per replica, running plus "
                "waiting (waiting alone swings the count up and down); set target_load, e.g. "
                '16, instead (docs/vllm.md, "Autoscaling")'
            )
        return values

    @field_validator("min_replicas")
    @classmethod
    def _no_scale_to_zero(cls, floor: int) -> int:
        if floor == 0:
            raise ValueError(
                "must be at least 1: scaling to zero is not offered, since at zero no vLLM runs "
                "to report a queue, so nothing would ever scale it up again; it needs a signal "
                "that exists at zero (the request rate at the edge), which this stack does not read"
            )
        return floor

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be at least min_replicas "
                f"({self.min_replicas})"
            )
        return self


class GatewayDataplane(StrictModel):
    """The Gateway's proxy pods, which open the connections to vLLM: admitted to vLLM's port by
    their labels in their namespace."""

    namespace: DnsLabel
    """The namespace of the Gateway's proxy pods."""
    pod_labels: LabelMap
    """Labels of the Gateway's proxy pods (not empty)."""

    @model_validator(mode="after")
    def _pods_are_named(self) -> GatewayDataplane:
        if not self.pod_labels:
            raise ValueError(
                "pod_labels must name the Gateway's proxy pods: empty, every pod of "
                f"{self.namespace} could reach vLLM's unguarded routes"
            )
        return self


class GatewayRef(StrictModel):
    """The Gateway API Gateway an HTTPRoute attaches to (the platform's; its listener holds TLS)."""

    name: DnsLabel
    """The Gateway's name."""
    namespace: DnsLabel
    """The Gateway's namespace."""
    section_name: DnsLabel | None = None
    """The Gateway's HTTPS listener for the host, when it has several."""
    dataplane: GatewayDataplane | None = None
    """The pods that carry the Gateway's traffic (Envoy Gateway's proxies, Istio's gateway
    Deployment): unset, only `ingress_cidrs` admits the Gateway (a cloud-managed one)."""

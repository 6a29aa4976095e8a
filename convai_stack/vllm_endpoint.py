"""A vLLM endpoint of a stack: its schema, and the rules of its name, namespace, URL and image."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from convai_provider.resources.field_docs import on_change, required_though_defaulted
from convai_provider.resources.fields import Name
from convai_stack.config_keys import ConfigKey
from convai_stack.external_endpoint import OTHER_KIND_CHANGE, SERVED_NAME_CHANGE
from convai_stack.kubernetes_options import (
    EGRESS_DENIED,
    GPU_TOLERATIONS,
    HF_HUB_FQDNS,
    Autoscaling,
    DnsLabel,
    FqdnPattern,
    GatewayRef,
    Hostname,
    IpNetwork,
    LabelMap,
    MetricsScrape,
    Quantity,
    Toleration,
    is_ipv6,
)
from convai_stack.schema_base import StrictModel

VLLM_IMAGE = "vllm/vllm-openai"
VLLM_IMAGE_TAG = "v0.33.0"
"""Pinned: an unpinned image changes what serves production on the next pod restart."""


NAMESPACE_PREFIX = "vllm-"
DNS_LABEL_LIMIT = 63
"""Kubernetes' most characters in a name that is a DNS label, such as a namespace's."""


def vllm_namespace(name: str) -> str:
    """The namespace of the vLLM endpoint `name`, which holds every resource of it."""
    return f"{NAMESPACE_PREFIX}{name}"


def _fits_namespace(name: str) -> str:
    if len(vllm_namespace(name)) > DNS_LABEL_LIMIT:
        most = DNS_LABEL_LIMIT - len(NAMESPACE_PREFIX)
        raise ValueError(
            f"must be at most {most} characters (got {len(name)}): the namespace "
            f"{vllm_namespace('<name>')} may not exceed Kubernetes' {DNS_LABEL_LIMIT}; shorten it"
        )
    return name


VllmName = Annotated[DnsLabel, AfterValidator(_fits_namespace)]
"""Names the namespace `vllm-<name>` and every resource of the endpoint."""

API_PATH = "/v1"
"""The only path a vLLM endpoint publishes: vLLM's key guards /v1, while /invocations, /pause,
/update_weights and /tokenize answer anyone (vLLM's security guide). Convai and the preflight call
only /v1/*."""


def published_base_url(host: str) -> str:
    """The base_url Convai is given for a vLLM endpoint published on `host`."""
    return f"https://{host}{API_PATH}"


PLACEHOLDER = "REPLACE-ME"
"""What a committed stack file holds where only its operator can know the value (a model's commit,
an image's digest): the schema accepts it, so the file reads, and `pulumi preview` refuses it,
saying how to find the real value (`placeholder_problems`)."""


def digest_hint(image: str) -> str:
    return (
        f"get the digest of {image} with `crane digest {image}`, `docker buildx imagetools "
        f"inspect {image}` (its Digest line) or `skopeo inspect docker://docker.io/{image}` "
        "(its Digest field), and set it as image_digest"
    )


def _revision_hint(model: str) -> str:
    return (
        f"set the full commit hash of {model} on the Hugging Face Hub: `curl -s "
        f"https://huggingface.co/api/models/{model}/revision/main | jq -r .sha` (a gated model "
        'needs -H "Authorization: Bearer $HF_TOKEN"), or copy it from '
        f"https://huggingface.co/{model}/commits/main (docs/vllm.md, 'Pinned weights')"
    )


def _digest(value: str) -> str:
    if value != PLACEHOLDER and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise ValueError(f"must be an image digest such as sha256:<64 hex digits> (got {value!r})")
    return value


ImageDigest = Annotated[StrictStr, AfterValidator(_digest)]
REVISION_PATTERN = re.compile(r"[0-9a-f]{40}")
"""A full commit hash: a branch or tag (`main`, `v1.0`) moves, and a short hash is ambiguous."""


MAX_GPUS_PER_NODE = 8
COMMON_GPU_COUNTS = (1, 2, 4, 8)
"""Tensor-parallel sizes every common model's heads divide by."""


def _divides(gpus: int, heads: int, kv_heads: int) -> bool:
    # vLLM splits the attention heads over the GPUs, and the KV heads too, or replicates them
    # when there are fewer KV heads than GPUs.
    return heads % gpus == 0 and (kv_heads % gpus == 0 or gpus % kv_heads == 0)


_NEW_CLAIMS = on_change(
    "replaces the StatefulSet (claims cannot be resized or moved in place; docs/vllm.md)",
    replaces=True,
)


class VllmEndpoint(StrictModel):
    """A vLLM deployment on Kubernetes, published over TLS so Convai can reach it."""

    kind: Literal["vllm"] = Field(json_schema_extra=OTHER_KIND_CHANGE)
    """`vllm`: a vLLM deployment this stack declares."""
    name: VllmName = Field(
        json_schema_extra=on_change(
            "replaces every resource of the endpoint (a new namespace), and its Convai models "
            "point at the new one",
            replaces=True,
        )
    )
    """A DNS label of at most 58 characters (the namespace `vllm-<name>` must fit in 63): names the
    namespace and every resource of the endpoint; models refer to it (`endpoint`)."""
    model: Name
    """The Hugging Face model id, e.g. meta-llama/Llama-3.1-8B-Instruct."""
    revision: StrictStr = Field(
        default="", validate_default=True, json_schema_extra=required_though_defaulted()
    )
    """The commit of the model's repo that every replica serves: an init container downloads
    exactly that onto the replica's claim, and vLLM then starts offline (docs/vllm.md, "Pinned
    weights"). Required on every vLLM endpoint, staging's too."""
    served_model_name: Name = Field(json_schema_extra=SERVED_NAME_CHANGE)
    """The name vLLM serves the model as: the Convai model's `model_name`."""
    also_served_as: list[Name] = Field(default_factory=list)
    """More names vLLM answers to besides served_model_name: the old name while a served name
    changes, so no request of Convai's gets a 404 (docs/vllm.md, "Changing the model or the
    served name")."""
    host: Hostname
    """Public DNS name of the Ingress (or the HTTPRoute), one endpoint each; the Convai model's
    base_url becomes https://HOST/v1."""
    image_tag: Name = VLLM_IMAGE_TAG
    """The pinned tag of the vllm/vllm-openai image."""
    image_digest: ImageDigest | None = None
    """`sha256:<64 hex>`: pins the exact image (`vllm/vllm-openai:TAG@DIGEST`); a tag can be moved,
    a digest cannot. The tag stays for readers (docs/vllm.md, "Image digests")."""
    max_model_len: int = Field(default=8192, gt=0)
    """The context length vLLM serves (`--max-model-len`)."""
    attention_heads: int | None = Field(default=None, ge=1)
    """The model's num_attention_heads (its config.json); with kv_heads stated, any `gpus` that
    divides both is admitted."""
    kv_heads: int | None = Field(default=None, ge=1)
    """The model's num_key_value_heads (its config.json): stated with attention_heads, they admit
    any `gpus` that divides them; unstated, `gpus` is 1, 2, 4 or 8."""
    gpus: int = Field(default=1, ge=1)
    """GPUs per replica, all on one node (at most 8): vLLM's tensor-parallel size, 1, 2, 4 or 8,
    or any count dividing attention_heads and kv_heads."""
    replicas: int = Field(default=1, ge=1, le=64)
    """Each replica owns its model cache (a StatefulSet claim): any count can start. With 2 or
    more, changes roll one replica at a time; with one, every change is an outage while the model
    reloads."""
    startup_timeout: int = Field(default=1800, ge=300, le=14400)
    """Seconds vLLM may take to load the model from its claim and start serving (the startup
    probe's deadline) before the kubelet restarts it."""
    download_timeout: int | None = Field(default=None, ge=300, le=14400)
    """Seconds the init container may take to download the model onto a claim that lacks it;
    left out, startup_timeout (the one deadline of stack files from before this key). Pulumi's
    wait for a replica is the image pull plus both (docs/vllm.md, "Deadlines")."""
    cpu: Quantity = "8"
    """CPU of each replica, requested and limited alike."""
    memory: Quantity = "32Gi"
    """Memory of each replica, requested and limited alike."""
    shm_size: Quantity = "8Gi"
    """Size of the memory-backed /dev/shm."""
    cache_size: Quantity = Field(default="100Gi", json_schema_extra=_NEW_CLAIMS)
    """Size of each replica's model cache claim (ReadWriteOnce), which holds HF_HOME."""
    storage_class: Name | None = Field(default=None, json_schema_extra=_NEW_CLAIMS)
    """The StorageClass of the cache claims; left out, the cluster's default."""
    max_n_sequences: int = Field(default=64, ge=1, le=128)
    """VLLM_MAX_N_SEQUENCES: the most sequences (`n`) one request may ask for. vLLM's default,
    16384, lets one request of a public endpoint exhaust the server; its guide suggests 64-128."""
    tolerations: list[Toleration] = Field(default_factory=lambda: list(GPU_TOLERATIONS))
    """Taints of the GPU nodes; replaces the default, so list nvidia.com/gpu too if needed."""
    node_selector: LabelMap = Field(default_factory=dict)
    """Node labels a replica's node must carry, e.g. the GPU model's:
    `{nvidia.com/gpu.product: NVIDIA-L4}`."""
    runtime_class_name: DnsLabel | None = None
    """The RuntimeClass that exposes GPUs (e.g. nvidia) where it is not the node's default."""
    priority_class_name: DnsLabel | None = None
    """A PriorityClass the platform has created (this stack declares no cluster-wide object): a
    replica outranks batch pods that tolerate the GPU taint and may preempt them
    (docs/vllm.md, "GPU placement")."""
    ingress_class: Name = "nginx"
    """The IngressClass of the endpoint's Ingress."""
    ingress_namespace: DnsLabel = "ingress-nginx"
    """The ingress controller's namespace: the only one whose pods may reach vLLM's port (behind a
    Gateway, `gateway.dataplane` says whose)."""
    ingress_pod_labels: LabelMap = Field(
        default_factory=lambda: {
            "app.kubernetes.io/name": "ingress-nginx",
            "app.kubernetes.io/component": "controller",
        }
    )
    """Labels of the ingress controller's pods (ingress-nginx's by default)."""
    ingress_cidrs: list[IpNetwork] | None = None
    """Source ranges also admitted to vLLM's port: a cloud load balancer that reaches the pods
    directly (GKE's 35.191.0.0/16 and 130.211.0.0/22, a proxy-only subnet) or an ingress
    controller on the host network (the nodes' range) (docs/vllm.md, "The Gateway API")."""
    cluster_issuer: Name | None = "letsencrypt-prod"
    """cert-manager ClusterIssuer that issues the TLS certificate (declared as a Certificate `vllm`,
    Secret `vllm-tls`); it must issue trusted certificates, never a staging CA's. null to bring
    your own `<name>-tls` Secret."""
    hf_token_config: ConfigKey | None = None
    """Stack config key of a secret Hugging Face token, for gated models."""
    egress_denied_cidrs: list[IpNetwork] = Field(default_factory=lambda: list(EGRESS_DENIED))
    """Networks the pods' HTTPS (443) may not reach; anything else on 443 may be (the model hub and
    its CDN). IPv6 HTTPS is allowed only when the list names an IPv6 network, so a list of IPv4
    networks alone keeps IPv6 closed. Replaces the default: keep 169.254.0.0/16 (docs/vllm.md,
    "Least privilege")."""
    dns_namespace: DnsLabel = "kube-system"
    """Where the cluster DNS runs: the only egress allowed besides HTTPS."""
    dns_pod_labels: LabelMap = Field(default_factory=lambda: {"k8s-app": "kube-dns"})
    """Labels of the cluster DNS's pods (CoreDNS keeps kube-dns's label on every major cloud)."""
    api_key_in_use: Literal["a", "b"] = "a"
    """Which of the endpoint's two generated keys Convai is given. vLLM accepts both, so a switch
    updates the Convai model and restarts no pod: rotate the other key, then switch to it
    (docs/vllm.md, "Rotating an endpoint key")."""
    metrics: MetricsScrape | None = None
    """A scrape path for vLLM's /metrics (docs/vllm.md, "Metrics and alerts"); off by default."""
    autoscaling: Autoscaling | None = None
    """KEDA scales the replicas on requests per replica, running plus waiting; needs `metrics`,
    replaces `replicas` (docs/vllm.md, "Autoscaling")."""
    gateway: GatewayRef | None = None
    """Publish through the Gateway API (an HTTPRoute on this Gateway) instead of an Ingress
    (docs/vllm.md, "The Gateway API")."""
    egress_fqdns: list[FqdnPattern] | None = None
    """HTTPS egress only to these names, as a CiliumNetworkPolicy (the cluster runs Cilium); true:
    the Hugging Face hub's (HF_HUB_FQDNS); unset, HTTPS goes anywhere outside
    egress_denied_cidrs (docs/vllm.md, "FQDN egress allow-list")."""

    @model_validator(mode="after")
    def _options_fit_together(self) -> VllmEndpoint:
        chosen = self.model_fields_set
        if self.autoscaling is not None:
            if "replicas" in chosen:
                raise ValueError(
                    "replicas: leave it out when autoscaling is set: KEDA sets the count "
                    "between autoscaling.min_replicas and autoscaling.max_replicas"
                )
            if self.metrics is None:
                raise ValueError(
                    "autoscaling needs metrics: KEDA reads vLLM's queue depth from the "
                    "Prometheus that scrapes it; set metrics too"
                )
        if self.gateway is not None:
            self._fits_the_gateway(self.gateway)
        if self.egress_fqdns == []:
            raise ValueError(
                "egress_fqdns: empty would allow no HTTPS at all (the model could not be "
                "downloaded); list the hosts, set true for the Hugging Face hub's, or leave it out"
            )
        if self.ingress_cidrs == []:
            raise ValueError(
                "ingress_cidrs: empty admits nothing more; list ranges or leave it out"
            )
        return self

    def _fits_the_gateway(self, gateway: GatewayRef) -> None:
        for field, why in (
            ("ingress_class", "an HTTPRoute has no ingress class"),
            ("cluster_issuer", "the Gateway's HTTPS listener holds the certificate"),
            ("ingress_namespace", "the Gateway's proxies are gateway.dataplane.namespace"),
            ("ingress_pod_labels", "the Gateway's proxies are gateway.dataplane.pod_labels"),
        ):
            if field in self.model_fields_set:
                raise ValueError(
                    f'{field}: leave it out when gateway is set: {why} (docs/vllm.md, "The '
                    'Gateway API")'
                )
        if gateway.dataplane is None and self.ingress_cidrs is None:
            raise ValueError(
                "gateway.dataplane: name the Gateway's proxy pods, or set ingress_cidrs to the "
                "ranges a cloud-managed Gateway connects from: otherwise the endpoint's "
                "NetworkPolicy admits nobody from the Gateway, and every request through it is "
                "dropped (a 503). For Envoy Gateway: dataplane: {namespace: envoy-gateway-system, "
                "pod_labels: {gateway.envoyproxy.io/owning-gateway-name: "
                f"{gateway.name}, gateway.envoyproxy.io/owning-gateway-namespace: "
                f'{gateway.namespace}}}}} (docs/vllm.md, "The Gateway API")'
            )

    @field_validator("egress_fqdns", mode="before")
    @classmethod
    def _the_hubs_names(cls, value: Any) -> Any:
        return list(HF_HUB_FQDNS) if value is True else value

    @field_validator("ingress_cidrs")
    @classmethod
    def _not_everyone(cls, networks: list[str] | None) -> list[str] | None:
        for network in networks or []:
            if ipaddress.ip_network(network).prefixlen == 0:
                raise ValueError(
                    f"{network} admits every address to vLLM's port, whose /pause, /invocations "
                    "and /tokenize answer without a key; name the load balancer's or the nodes' "
                    "ranges"
                )
        return networks

    @property
    def edge_pods(self) -> tuple[str, dict[str, str]] | None:
        """(namespace, pod labels) of the pods that forward Convai's requests to vLLM: the
        ingress controller's, the Gateway's proxies, or none (a cloud-managed Gateway)."""
        if self.gateway is None:
            return self.ingress_namespace, self.ingress_pod_labels
        dataplane = self.gateway.dataplane
        return (dataplane.namespace, dataplane.pod_labels) if dataplane else None

    @property
    def egress_denied_by_family(self) -> tuple[list[str], list[str]]:
        """(IPv4, IPv6) networks of egress_denied_cidrs; no IPv6 ones: IPv6 stays closed."""
        v6 = [n for n in self.egress_denied_cidrs if is_ipv6(n)]
        return [n for n in self.egress_denied_cidrs if not is_ipv6(n)], v6

    @property
    def min_replicas(self) -> int:
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replicas

    @property
    def download_deadline(self) -> int:
        """The init container's deadline: download_timeout, or startup_timeout when unset."""
        return self.download_timeout if self.download_timeout is not None else self.startup_timeout

    @property
    def issuer(self) -> str | None:
        """The ClusterIssuer of the stack's own Certificate: none behind a Gateway."""
        return None if self.gateway else self.cluster_issuer

    @field_validator("revision")
    @classmethod
    def _pinned(cls, revision: str, info: ValidationInfo) -> str:
        if revision == PLACEHOLDER or REVISION_PATTERN.fullmatch(revision):
            return revision
        model = info.data.get("model", "the model")
        if not revision:
            raise ValueError(
                "is required: every vLLM endpoint serves one commit of its model, the same on "
                f"every replica and after every restart; {_revision_hint(model)}"
            )
        raise ValueError(
            f"must be a full 40-hex commit hash (got {revision!r}): a branch or tag such as "
            f"main moves, and replicas would serve different weights under one name; "
            f"{_revision_hint(model)}"
        )

    @field_validator("also_served_as")
    @classmethod
    def _other_names(cls, names: list[str], info: ValidationInfo) -> list[str]:
        served = info.data.get("served_model_name")
        for name in names:
            if name == served:
                raise ValueError(f"{name!r} is the served_model_name, served already: remove it")
            if names.count(name) > 1:
                raise ValueError(f"{name!r} is listed twice: list each other name once")
        return names

    @field_validator("gpus")
    @classmethod
    def _tensor_parallel_fits(cls, gpus: int, info: ValidationInfo) -> int:
        if gpus > MAX_GPUS_PER_NODE:
            raise ValueError(
                f"must be at most {MAX_GPUS_PER_NODE}: a replica runs on one node; replicas "
                "spanning several nodes are out of scope"
            )
        heads, kv_heads = info.data.get("attention_heads"), info.data.get("kv_heads")
        if heads is None or kv_heads is None:
            if gpus not in COMMON_GPU_COUNTS:
                raise ValueError(
                    f"{gpus} GPUs: tensor parallelism needs the model's attention and KV heads "
                    "divisible by it; use 1, 2, 4 or 8, or state attention_heads and kv_heads "
                    "(from the model's config.json: num_attention_heads, num_key_value_heads)"
                )
            return gpus
        if not _divides(gpus, heads, kv_heads):
            fits = [n for n in range(1, MAX_GPUS_PER_NODE + 1) if _divides(n, heads, kv_heads)]
            raise ValueError(
                f"{gpus} GPUs do not divide the model's {heads} attention heads; use a divisor "
                f"of both {heads} and {kv_heads} (KV heads), such as "
                f"{', '.join(map(str, fits[:-1]))} or {fits[-1]}"
            )
        return gpus

    @property
    def served_as(self) -> tuple[str, str]:
        """(base_url, model_name) Convai is given for this endpoint."""
        return published_base_url(self.host), self.served_model_name

    @property
    def namespace(self) -> str:
        return vllm_namespace(self.name)

    @property
    def tagged_image(self) -> str:
        return f"{VLLM_IMAGE}:{self.image_tag}"

    @property
    def image(self) -> str:
        reference = self.tagged_image
        return f"{reference}@{self.image_digest}" if self.image_digest else reference

    @property
    def served_names(self) -> list[str]:
        """Every name vLLM answers to; the first is the one its answers and metrics carry."""
        return [self.served_model_name, *self.also_served_as]

    def placeholder_problems(self, path: str) -> list[tuple[str, str]]:
        problems = []
        if self.revision == PLACEHOLDER:
            problems.append(
                (
                    f"{path}.revision",
                    f"is the placeholder {PLACEHOLDER} of the committed stack file; "
                    f"{_revision_hint(self.model)}",
                )
            )
        if self.image_digest == PLACEHOLDER:
            problems.append(
                (
                    f"{path}.image_digest",
                    f"is the placeholder {PLACEHOLDER} of the committed stack file; "
                    f"{digest_hint(self.tagged_image)}",
                )
            )
        return problems

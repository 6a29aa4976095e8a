"""The stack configuration schema: inference endpoints and the Convai models that use them.

Read by the Pulumi program (from `pulumi.Config`) and by the operator CLI (from
`stacks/Pulumi.<stack>.yaml`), through the same pydantic models, so both refuse the same mistakes
with the same words: the config path, what is wrong, and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from convai_provider.api.accounts import account_name
from convai_provider.api.builtin_models import (
    BUILTIN_MODEL_CODES,
    BUILTIN_MODELS,
    DEFAULT_FALLBACK_MODEL,
)
from convai_provider.guards.documents import DocumentError, TooDeepError, load_yaml, parse_json
from convai_provider.guards.validation import field_problems
from convai_provider.resources.field_docs import on_change, required_though_defaulted, shared_field
from convai_provider.resources.fields import AccountAlias, BaseUrl, Name
from convai_provider.resources.private_model_inputs import ENDPOINT_FIELDS, PrivateModelInputs
from convai_provider.resources.settings import CONFIG_KEYS as PROVIDER_KEYS

PROJECT = "convai-models"
ENDPOINTS_KEY = "endpoints"
MODELS_KEY = "models"
PROTECT_KEY = "protectModels"
FALLBACK_KEY = "fallbackModel"
EXTRA_BUILTINS_KEY = "extraBuiltinModels"
REQUIRE_DIGEST_KEY = "requireImageDigest"
STACK_KEYS = (
    ENDPOINTS_KEY,
    MODELS_KEY,
    PROTECT_KEY,
    FALLBACK_KEY,
    EXTRA_BUILTINS_KEY,
    REQUIRE_DIGEST_KEY,
)
PROVIDER_NAMESPACE = "convai"
MODELS_EXPORT = "models"
"""The stack output of every model's group, model name, display name and base_url."""
ENDPOINT_KEYS_EXPORT = "endpointKeys"
"""The stack output (secret) of every model's endpoint key, which the health command reads."""
STACK_CONFIG_DIR = "stacks"
"""Where the stack files are: Pulumi.yaml's `stackConfigDir`."""
DEV_STACK = "dev"
"""The laptop stack, which scripts/dev-up runs in a project of its own: its secrets are set
through dev-up (`scripts/dev-up config set --secret ...`), not in this checkout."""
SECRET_KEY_FIELDS = ("api_key_config", "hf_token_config")
"""Endpoint fields naming a secret config key, which is then a key of the stack."""

VLLM_IMAGE = "vllm/vllm-openai"
VLLM_IMAGE_TAG = "v0.33.0"
"""Pinned: an unpinned image changes what serves production on the next pod restart."""


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what} (got {value!r})")
        return value

    return AfterValidator(check)


Quantity = Annotated[
    StrictStr,
    _matching(
        r"[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?",
        "a Kubernetes quantity such as 8, 500m or 32Gi",
    ),
]
Hostname = Annotated[
    StrictStr,
    _matching(
        r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a DNS name such as llama.example.com, without scheme or path",
    ),
]
DnsLabel = Annotated[
    StrictStr,
    _matching(
        r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
        "lowercase letters, digits and '-' (a DNS label), such as llama-8b",
    ),
]


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


def _digest_hint(image: str) -> str:
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


def _is_ipv6(network: str) -> bool:
    return ipaddress.ip_network(network).version == 6


ConfigKey = Annotated[
    StrictStr,
    _matching(
        r"(?:[A-Za-z0-9_-]+:)?[A-Za-z][A-Za-z0-9_.-]*", "a config key such as localVllmApiKey"
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Toleration(_Strict):
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


MAX_GPUS_PER_NODE = 8
COMMON_GPU_COUNTS = (1, 2, 4, 8)
"""Tensor-parallel sizes every common model's heads divide by."""


def _divides(gpus: int, heads: int, kv_heads: int) -> bool:
    # vLLM splits the attention heads over the GPUs, and the KV heads too, or replicates them
    # when there are fewer KV heads than GPUs.
    return heads % gpus == 0 and (kv_heads % gpus == 0 or gpus % kv_heads == 0)


FqdnPattern = Annotated[
    StrictStr,
    _matching(
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


class MetricsScrape(_Strict):
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


class Autoscaling(_Strict):
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


class GatewayDataplane(_Strict):
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


class GatewayRef(_Strict):
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


_SERVED_NAME = on_change(
    'replaces its Convai models (their model_name); docs/vllm.md, "Changing the model or the '
    'served name", says how to change it without a 404 window',
    replaces=True,
)
_OTHER_KIND = on_change(
    "replaces the endpoint: a vllm endpoint's resources are created or deleted", replaces=True
)
_NEW_CLAIMS = on_change(
    "replaces the StatefulSet (claims cannot be resized or moved in place; docs/vllm.md)",
    replaces=True,
)


class ExternalEndpoint(_Strict):
    """An OpenAI-compatible endpoint that already runs somewhere (a hosted provider, a laptop)."""

    kind: Literal["external"] = Field(json_schema_extra=_OTHER_KIND)
    """`external`: an endpoint that runs elsewhere."""
    name: DnsLabel
    """The endpoint's name, which models refer to (`endpoint`)."""
    base_url: BaseUrl
    """The API root, ending in /v1 (http(s), without credentials, query or fragment); without
    /v1 and with the preflight off (`verify_endpoint: false`), preview warns."""
    model_name: Name = Field(json_schema_extra=_SERVED_NAME)
    """The name the endpoint serves the model as: the Convai model's `model_name`."""
    api_key_config: ConfigKey
    """The name of a secret config key holding the endpoint's key, set with
    `pulumi config set --secret <name> <key>`."""

    @property
    def served_as(self) -> tuple[str, str]:
        """(base_url, model_name) Convai is given for this endpoint."""
        return self.base_url, self.model_name


class VllmEndpoint(_Strict):
    """A vLLM deployment on Kubernetes, published over TLS so Convai can reach it."""

    kind: Literal["vllm"] = Field(json_schema_extra=_OTHER_KIND)
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
    served_model_name: Name = Field(json_schema_extra=_SERVED_NAME)
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
        v6 = [n for n in self.egress_denied_cidrs if _is_ipv6(n)]
        return [n for n in self.egress_denied_cidrs if not _is_ipv6(n)], v6

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
                    f"{_digest_hint(self.tagged_image)}",
                )
            )
        return problems


Endpoint = Annotated[ExternalEndpoint | VllmEndpoint, Field(discriminator="kind")]


class ModelDeclaration(_Strict):
    """One Convai private model (a ConvaiPrivateModel): its `base_url`, `model_name` and `api_key`
    come from its endpoint's outputs, every other input of the resource is declared here, with the
    resource's default and doc."""

    model_group_name: Name = shared_field(PrivateModelInputs, "model_group_name")
    endpoint: DnsLabel
    """The `name` of the endpoint (of `endpoints`) that serves the model."""
    display_name: Name | None = shared_field(PrivateModelInputs, "display_name")
    is_uncensored: StrictBool = shared_field(PrivateModelInputs, "is_uncensored")
    verify_endpoint: StrictBool = shared_field(PrivateModelInputs, "verify_endpoint")
    adopt_existing: StrictBool = shared_field(PrivateModelInputs, "adopt_existing")
    protect: StrictBool | None = None
    """Protect the model from deletion (Pulumi's `protect`); left out, the stack's
    `protectModels`."""
    characters: list[Name] = Field(default_factory=list)
    """Convai character IDs that use this model; they are moved to the fallback model before the
    model is ever deregistered."""
    account: AccountAlias | None = shared_field(PrivateModelInputs, "account")

    def resource_inputs(self) -> dict[str, Any]:
        """The inputs of its ConvaiPrivateModel declared here (the endpoint gives the rest)."""
        return {name: getattr(self, name) for name in DECLARED_INPUTS}


DECLARED_INPUTS = tuple(f for f in PrivateModelInputs.model_fields if f not in ENDPOINT_FIELDS)
"""The private model's inputs a stack file declares on the model: all but its endpoint's."""


class StackConfig(_Strict):
    """The settings of a stack, each a key under `convai-models:` in its stack file."""

    endpoints: list[Endpoint] = Field(default_factory=list)
    """Inference endpoints, each `kind: external` or `kind: vllm`."""
    models: list[ModelDeclaration] = Field(default_factory=list)
    """The Convai models, each referring to an endpoint by name."""
    protectModels: StrictBool = False  # noqa: N815 - the config key
    """Protect every model of the stack (a model's `protect` overrides it)."""
    fallbackModel: Name = DEFAULT_FALLBACK_MODEL  # noqa: N815 - the config key
    """The model characters move to before their model goes away: a built-in Convai code (listed in
    convai_provider/api/builtin_models.py and the README's "Characters bound to models"), a code
    named in extraBuiltinModels, or a model_group_name of this stack without characters of its
    own (and in the characters' account); anything else is refused, since a typo would leave
    characters on a model that does not exist."""
    extraBuiltinModels: list[Name] = Field(default_factory=list)  # noqa: N815 - the config key
    """Built-in Convai codes added after convai_provider/api/builtin_models.py was last updated,
    accepted as fallbackModel."""
    requireImageDigest: StrictBool = False  # noqa: N815 - the config key
    """Every vllm endpoint must set image_digest: a tag-only image is refused at preview, since a
    tag can be moved to other bits (on in prod; docs/vllm.md, "Image digests")."""

    @model_validator(mode="after")
    def _references_are_consistent(self) -> StackConfig:
        problems: list[tuple[str, str]] = []
        problems += _duplicates([e.name for e in self.endpoints], ENDPOINTS_KEY, "name")
        # Two Ingresses and two Certificates for one host: the controller admits only one.
        problems += _duplicates(
            [e.host if isinstance(e, VllmEndpoint) else None for e in self.endpoints],
            ENDPOINTS_KEY,
            "host",
        )
        problems += _duplicates(
            [m.model_group_name for m in self.models], MODELS_KEY, "model_group_name"
        )
        names = [m.display_name for m in self.models]
        problems += _duplicates(names, MODELS_KEY, "display_name")
        problems += _duplicates(
            [c for m in self.models for c in m.characters], MODELS_KEY, "characters"
        )
        declared = {e.name for e in self.endpoints}
        for index, model in enumerate(self.models):
            if model.endpoint not in declared:
                known = ", ".join(sorted(repr(n) for n in declared)) or "none"
                problems.append(
                    (
                        f"{MODELS_KEY}[{index}].endpoint",
                        f"'{model.endpoint}' is not a declared endpoint (declared: {known}); "
                        f"add it to {PROJECT}:{ENDPOINTS_KEY} or fix the reference",
                    )
                )
        problems += self._fallback_problems()
        problems += self._digest_problems()
        if problems:
            raise ValueError(_joined(problems))
        return self

    def _fallback_problems(self) -> list[tuple[str, str]]:
        """A fallback that does not exist strands characters: the outage bindings prevent."""
        fallback = self.fallbackModel
        own = {m.model_group_name: m for m in self.models}
        known = [*BUILTIN_MODEL_CODES, *self.extraBuiltinModels, *own]
        if fallback in BUILTIN_MODELS or fallback in self.extraBuiltinModels:
            return []
        if fallback in own:
            if own[fallback].characters:
                return [
                    (
                        FALLBACK_KEY,
                        f"'{fallback}' has characters of its own, which would fall back to it "
                        "while it goes away; choose a built-in Convai model such as "
                        f"{DEFAULT_FALLBACK_MODEL} or a model without characters",
                    )
                ]
            return self._fallback_account_problems(own[fallback])
        close = difflib.get_close_matches(fallback, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return [
            (
                FALLBACK_KEY,
                f"'{fallback}' is neither a built-in Convai model nor a model of this stack; "
                f"{hint}use one of {', '.join(BUILTIN_MODEL_CODES)}, a model_group_name of "
                f"{PROJECT}:{MODELS_KEY}, or name a code Convai added since in "
                f"{PROJECT}:{EXTRA_BUILTINS_KEY}",
            )
        ]

    def _digest_problems(self) -> list[tuple[str, str]]:
        if not self.requireImageDigest:
            return []
        return [
            (
                f"{ENDPOINTS_KEY}[{index}].image_digest",
                f"{REQUIRE_DIGEST_KEY} is on and {endpoint.tagged_image} is named by its tag "
                f"only, which can be moved to other bits; {_digest_hint(endpoint.tagged_image)}",
            )
            for index, endpoint in enumerate(self.endpoints)
            if isinstance(endpoint, VllmEndpoint) and endpoint.image_digest is None
        ]

    def placeholder_problems(self) -> list[str]:
        """One line per value the committed file leaves to its operator: accepted by the schema
        (the operator commands read the file), refused before anything is deployed."""
        problems = [
            problem
            for index, endpoint in enumerate(self.endpoints)
            if isinstance(endpoint, VllmEndpoint)
            for problem in endpoint.placeholder_problems(f"{ENDPOINTS_KEY}[{index}]")
        ]
        return _joined(problems).splitlines()

    def _fallback_account_problems(self, fallback: ModelDeclaration) -> list[tuple[str, str]]:
        """A character can only fall back to a model of its own account."""
        elsewhere = sorted(
            m.model_group_name
            for m in self.models
            if m.characters and m.account != fallback.account
        )
        if not elsewhere:
            return []
        return [
            (
                FALLBACK_KEY,
                f"'{fallback.model_group_name}' is in {account_name(fallback.account)}, but the "
                "characters of "
                f"{', '.join(elsewhere)} live in another account and can only fall back to a "
                f"model of theirs; choose a built-in Convai model such as {DEFAULT_FALLBACK_MODEL}",
            )
        ]

    def endpoint(self, name: str) -> ExternalEndpoint | VllmEndpoint:
        return next(e for e in self.endpoints if e.name == name)

    def protected(self, model: ModelDeclaration) -> bool:
        return self.protectModels if model.protect is None else model.protect


def _duplicates(values: list[Any], key: str, field: str) -> list[tuple[str, str]]:
    seen: dict[Any, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in seen:
            problems.append(
                (
                    f"{key}[{index}].{field}",
                    f"{value!r} is already used by {key}[{seen[value]}]; each {field} must be "
                    "unique within a stack",
                )
            )
        else:
            seen[value] = index
    return problems


def _joined(problems: list[tuple[str, str]]) -> str:
    return "\n".join(f"{PROJECT}:{path}: {reason}" for path, reason in problems)


class StackConfigError(Exception):
    """Invalid stack configuration, one line per problem: `project:path: what is wrong; the fix`."""


def parse_stack_config(
    values: Mapping[str, Any],
    source: str = "stack configuration",
    keys: Iterable[str] = (),
    where: StackKeys | None = None,
) -> StackConfig:
    """Validate the project's config values (keys without the `convai-models:` prefix), and
    `keys`, every config key the stack sets, namespaced: all problems are reported at once."""
    lines = unknown_key_problems(keys, values, where)
    try:
        stack = StackConfig.model_validate({k: v for k, v in values.items() if k in STACK_KEYS})
    except ValidationError as exc:
        for path, reason in field_problems(exc):
            if path in ("", "__root__") or reason.startswith(PROJECT):
                lines.append(reason)
            else:
                lines.append(f"{PROJECT}:{_config_path(path)}: {reason}")
    if lines:
        raise StackConfigError(f"Invalid {source}:\n" + "\n".join(lines))
    return stack


@dataclass(frozen=True)
class StackKeys:
    """Where a stack's keys are, for the command that removes one: the stack's name and which of
    its keys hold secrets."""

    name: str
    secrets: frozenset[str] = frozenset()

    def removal(self, key: str) -> str:
        if self.name != DEV_STACK:
            return f"`pulumi config rm --stack {self.name} {key}`"
        # dev-up keeps the dev stack's secrets, and copies the rest from its file at every run
        if key in self.secrets:
            return f"`scripts/dev-up config rm {key}`"
        return f"an edit of {stack_file(self.name)}"


def unknown_key_problems(
    keys: Iterable[str], values: Mapping[str, Any], where: StackKeys | None = None
) -> list[str]:
    """One line per key of our namespaces (`convai-models:`, `convai:`) that nothing reads.

    Nothing would ever read such a key, so a typo would be silently ignored: `convai-models:model`
    declares no models (and `pulumi up` would deregister every one), `convai:baseURL` leaves the
    key travelling to the public Convai URL. `values` (the project's, unprefixed) tell which
    secret keys the endpoints name."""
    known = known_keys(values)
    # Compared without the namespace, which every key shares: `apiKey` set in the project's
    # namespace is the provider's `convai:apiKey`.
    by_name = {k.partition(":")[2].lower(): k for k in known}
    problems = []
    for key in keys:
        namespace, _, name = key.partition(":")
        if namespace not in (PROJECT, PROVIDER_NAMESPACE) or key in known:
            continue
        close = difflib.get_close_matches(name.lower(), by_name, n=1)
        hint = (
            f"did you mean {by_name[close[0]]}?"
            if close
            else f"the settings are {', '.join(sorted(known, key=str.lower))}."
        )
        removal = where.removal(key) if where else f"`pulumi config rm {key}`"
        problems.append(
            f"{key}: neither a setting of this project nor a secret an endpoint names, so nothing "
            f"would read it; {hint} Rename it, or remove it with {removal}"
        )
    return problems


def known_keys(values: Mapping[str, Any]) -> set[str]:
    """Every key of our namespaces a stack may set: the schema's, the provider's, and the secret
    keys its endpoints name (a key without a namespace is in the project's, as Pulumi has it)."""
    named = set()
    endpoints = values.get(ENDPOINTS_KEY)
    for endpoint in endpoints if isinstance(endpoints, list) else []:
        if isinstance(endpoint, Mapping):
            named |= {endpoint[f] for f in SECRET_KEY_FIELDS if isinstance(endpoint.get(f), str)}
    return (
        {f"{PROJECT}:{k}" for k in STACK_KEYS}
        | set(PROVIDER_KEYS)
        | {k if ":" in k else f"{PROJECT}:{k}" for k in named}
    )


def _config_path(dotted: str) -> str:
    """`models.1.endpoint` -> `models[1].endpoint`; tagged unions add their tag, which goes."""
    parts: list[str] = []
    for part in dotted.split("."):
        if part.isdigit():
            parts[-1] += f"[{part}]"
        elif part in ("external", "vllm") and parts and parts[-1].endswith("]"):
            continue
        else:
            parts.append(part)
    return ".".join(parts)


def stack_file(stack: str, root: Path = Path()) -> Path:
    """The stack file of `stack` in the checkout `root` (relative to it by default)."""
    return root / STACK_CONFIG_DIR / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` map of a stack file, every key fully namespaced."""
    document = read_stack_document(path)
    if not isinstance(document.get("config", {}), dict):
        raise StackConfigError(f"{path} must be a mapping with a `config:` mapping inside")
    config = dict(document.get("config") or {})
    for key in config:
        if not isinstance(key, str):
            raise StackConfigError(
                f"{path}: config key {key!r} is not a string: keys read like `project:name`"
            )
    return config


def read_stack_document(path: Path) -> dict[str, Any]:
    """A Pulumi project or stack file as a mapping: the one reader of these files. A key given
    twice is refused, naming the key and both lines (YAML would keep the last one silently);
    so is a file that is no UTF-8, no YAML or no mapping."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StackConfigError(
            f"{path} does not exist: create it (see README, 'Adding an environment')"
        ) from None
    except IsADirectoryError:
        raise StackConfigError(
            f"{path} is a directory, not a stack file: {stack_file('NAME')} must be a file"
        ) from None
    except OSError as exc:
        raise StackConfigError(f"{path} could not be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StackConfigError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "save it as UTF-8"
        ) from None
    try:
        document = load_yaml(text, str(path)) or {}
    except DocumentError as exc:
        raise StackConfigError(str(exc)) from None
    if not isinstance(document, dict):
        raise StackConfigError(f"{path} must be a mapping with a `config:` mapping inside")
    return document


def project_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """This project's keys, prefix removed; object values given as JSON strings are decoded."""
    values: dict[str, Any] = {}
    for key, raw in config.items():
        namespace, _, name = key.partition(":")
        if namespace != PROJECT or name not in STACK_KEYS:
            continue
        value = raw
        if isinstance(raw, str) and name != FALLBACK_KEY:
            # The Pulumi runtime hands objects and booleans to programs as JSON text.
            try:
                value = parse_json(raw)
            except TooDeepError as exc:
                raise StackConfigError(f"{key}: {exc}; a stack's lists nest a few levels") from None
            except DocumentError:
                value = raw  # not JSON: the schema says what it must be
        values[name] = value
    return values

"""A vLLM OpenAI-compatible server on Kubernetes, reachable by Convai over TLS."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from convai_provider.stack_config import VLLM_IMAGE, VllmEndpoint

PORT = 8000
CACHE_PATH = "/root/.cache/huggingface"
COMPONENT_TYPE = "convai-models:inference:VllmDeployment"
KEY_CHECKSUM = "convai-models/api-key-sha256"
"""Pods read VLLM_API_KEY at start: a new key must roll them, and a changed template does."""
API_PATH = "/v1"
"""The only path published: vLLM's key guards /v1, while /invocations, /pause, /update_weights and
/tokenize answer anyone (vLLM's security guide). Convai and the preflight call only /v1/*."""
ROLLOUT_TIMEOUT = "40m"
"""Pulling weights and loading a model can take far longer than Kubernetes' default 10 minutes."""
ROLLOUT_TIMEOUTS = pulumi.CustomTimeouts(create=ROLLOUT_TIMEOUT, update=ROLLOUT_TIMEOUT)
"""Also the Service's and the Ingress's: both await ready endpoints, which exist only once a pod
has loaded its model; with pulumi-kubernetes' 10-minute default a cold start fails them."""


def vllm_args(endpoint: VllmEndpoint) -> list[str]:
    return [
        "--model",
        endpoint.model,
        "--served-model-name",
        endpoint.served_model_name,
        "--max-model-len",
        str(endpoint.max_model_len),
        "--tensor-parallel-size",
        str(endpoint.gpus),
        "--port",
        str(PORT),
    ]


def _probe(path: str, period: int, failures: int, delay: int = 0) -> k8s.core.v1.ProbeArgs:
    # /health answers without the API key; /v1/models would need it.
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=PORT),
        initial_delay_seconds=delay,
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=5,
    )


class VllmDeployment(pulumi.ComponentResource):
    """Namespace, generated API key, Secret, model cache PVC, Deployment, Service and TLS Ingress.

    Outputs `base_url` (https://HOST/v1), `model_name` (the served name) and `api_key` (secret).
    """

    base_url: pulumi.Output[str]
    model_name: pulumi.Output[str]
    api_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        endpoint: VllmEndpoint,
        hf_token: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}
        namespace = k8s.core.v1.Namespace(
            name, metadata=k8s.meta.v1.ObjectMetaArgs(name=f"vllm-{name}"), opts=child
        )
        ns = namespace.metadata.name

        key = random.RandomPassword(f"{name}-api-key", length=48, special=False, opts=child)
        secret_data: dict[str, pulumi.Input[str]] = {"VLLM_API_KEY": key.result}
        if hf_token is not None:
            secret_data["HF_TOKEN"] = hf_token
        secret = k8s.core.v1.Secret(
            f"{name}-keys",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, labels=labels),
            string_data=secret_data,
            opts=child,
        )
        cache = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-model-cache",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, labels=labels),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteOnce"],
                storage_class_name=endpoint.storage_class,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                    requests={"storage": endpoint.cache_size}
                ),
            ),
            opts=child,
        )
        deployment = self._deployment(
            name,
            endpoint,
            ns,
            labels,
            secret=secret,
            cache=cache,
            with_hf_token=hf_token is not None,
            key=key.result,
        )
        service = k8s.core.v1.Service(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, labels=labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port=PORT)],
            ),
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=ROLLOUT_TIMEOUTS),
        )
        ingress = self._ingress(name, endpoint, ns, labels, service)

        base_url, model_name = endpoint.served_as
        self.base_url = pulumi.Output.from_input(base_url)
        self.model_name = pulumi.Output.from_input(model_name)
        self.api_key = pulumi.Output.secret(key.result)
        self.ready: list[pulumi.Resource] = [deployment, ingress]
        self.register_outputs(
            {"base_url": self.base_url, "model_name": self.model_name, "api_key": self.api_key}
        )

    def _deployment(
        self,
        name: str,
        endpoint: VllmEndpoint,
        namespace: pulumi.Input[str],
        labels: dict[str, str],
        *,
        secret: k8s.core.v1.Secret,
        cache: k8s.core.v1.PersistentVolumeClaim,
        with_hf_token: bool,
        key: pulumi.Output[str],
    ) -> k8s.apps.v1.Deployment:
        env = [_secret_env("VLLM_API_KEY", secret)]
        if with_hf_token:
            env.append(_secret_env("HF_TOKEN", secret))
        limits = {
            "nvidia.com/gpu": str(endpoint.gpus),
            "memory": endpoint.memory,
            "cpu": endpoint.cpu,
        }
        container = k8s.core.v1.ContainerArgs(
            name="vllm",
            image=f"{VLLM_IMAGE}:{endpoint.image_tag}",
            args=vllm_args(endpoint),
            env=env,
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
            resources=k8s.core.v1.ResourceRequirementsArgs(limits=limits, requests=limits),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
                k8s.core.v1.VolumeMountArgs(name="model-cache", mount_path=CACHE_PATH),
            ],
            startup_probe=_probe("/health", period=10, failures=180),
            readiness_probe=_probe("/health", period=10, failures=3),
            liveness_probe=_probe("/health", period=15, failures=4),
        )
        volumes = [
            k8s.core.v1.VolumeArgs(
                name="shm",
                empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                    medium="Memory", size_limit=endpoint.shm_size
                ),
            ),
            k8s.core.v1.VolumeArgs(
                name="model-cache",
                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                    claim_name=cache.metadata.name
                ),
            ),
        ]
        return k8s.apps.v1.Deployment(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=endpoint.replicas,
                # A ReadWriteOnce cache cannot be mounted by old and new pods at once.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=labels, annotations={KEY_CHECKSUM: key.apply(_sha256)}
                    ),
                    spec=k8s.core.v1.PodSpecArgs(containers=[container], volumes=volumes),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=ROLLOUT_TIMEOUTS),
        )

    def _ingress(
        self,
        name: str,
        endpoint: VllmEndpoint,
        namespace: pulumi.Input[str],
        labels: dict[str, str],
        service: k8s.core.v1.Service,
    ) -> k8s.networking.v1.Ingress:
        annotations = {
            # Completions stream for a while; the default 60 s would cut long answers.
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
            "nginx.ingress.kubernetes.io/proxy-body-size": "16m",
            # Streamed tokens go out as vLLM writes them, not when nginx's buffer fills.
            "nginx.ingress.kubernetes.io/proxy-buffering": "off",
        }
        if endpoint.cluster_issuer:
            annotations["cert-manager.io/cluster-issuer"] = endpoint.cluster_issuer
        backend = k8s.networking.v1.IngressBackendArgs(
            service=k8s.networking.v1.IngressServiceBackendArgs(
                name=service.metadata.name,
                port=k8s.networking.v1.ServiceBackendPortArgs(number=PORT),
            )
        )
        return k8s.networking.v1.Ingress(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=namespace, labels=labels, annotations=annotations
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=endpoint.ingress_class,
                tls=[
                    k8s.networking.v1.IngressTLSArgs(
                        hosts=[endpoint.host], secret_name=f"{name}-tls"
                    )
                ],
                rules=[
                    k8s.networking.v1.IngressRuleArgs(
                        host=endpoint.host,
                        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                            paths=[
                                k8s.networking.v1.HTTPIngressPathArgs(
                                    path=API_PATH, path_type="Prefix", backend=backend
                                )
                            ]
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=ROLLOUT_TIMEOUTS),
        )


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_env(key: str, secret: k8s.core.v1.Secret) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=key,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret.metadata.name, key=key)
        ),
    )

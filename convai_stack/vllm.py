"""A vLLM OpenAI-compatible server on Kubernetes, reachable by Convai over TLS."""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from convai_stack.stack_config import VllmEndpoint, published_base_url

from . import vllm_metrics, vllm_network, vllm_pod, vllm_weights, vllm_workload
from .vllm_scope import EndpointScope

COMPONENT_TYPE = "convai-models:inference:VllmDeployment"
KEY_CHECKSUM = "convai-models/api-key-sha256"
"""vLLM reads its keys at start: a new key must roll the pods, and a changed template does."""
POD_SECURITY_VERSION = "v1.35"
"""The Kubernetes release whose Pod Security standards the namespace applies (the one the tests'
control plane runs): a cluster upgrade does not change what is admitted until this moves."""
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    **{
        f"pod-security.kubernetes.io/{mode}-version": POD_SECURITY_VERSION
        for mode in ("enforce", "warn", "audit")
    },
}
"""Pod Security admission of the endpoint's namespace: baseline enforced (no host access, no
privilege); restricted only reported, since the vLLM image runs as root: every apply shows its
warnings, expected (docs/vllm.md, "Least privilege")."""
KEY_SLOTS = ("a", "b")
"""vLLM accepts both keys (its --config file, vllm_pod.KEYS_FILE); Convai is given the endpoint's
`api_key_in_use`. So a key is rotated while vLLM still accepts the one Convai sends: no request
is refused during the roll."""


class VllmDeployment(pulumi.ComponentResource):
    """Namespace, generated API key, Secret, NetworkPolicy, StatefulSet (a model cache per
    replica), disruption budget, Service, TLS Ingress and its cert-manager Certificate (or an
    HTTPRoute to a Gateway); optionally a PodMonitor, a KEDA ScaledObject and an FQDN egress
    policy (docs/vllm.md).

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
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=endpoint.namespace, labels=POD_SECURITY),
            opts=child,
        )
        scope = EndpointScope(name, endpoint, namespace.metadata.name, labels)

        keys = {
            slot: random.RandomPassword(_key_name(name, slot), length=48, special=False, opts=child)
            for slot in KEY_SLOTS
        }
        secret = k8s.core.v1.Secret(
            f"{name}-keys",
            metadata=scope.metadata(),
            string_data={
                vllm_pod.KEYS_FILE_NAME: pulumi.Output.all(
                    *(k.result for k in keys.values())
                ).apply(vllm_pod.keys_file)
            },
            opts=child,
        )
        hf_secret = _hf_token_secret(scope, hf_token, child)
        template = vllm_pod.pod_template(
            endpoint,
            labels,
            annotations={
                KEY_CHECKSUM: pulumi.Output.all(*(k.result for k in keys.values())).apply(
                    lambda results: _sha256("\n".join(results))
                )
            },
            main=vllm_pod.container(endpoint),
            init=vllm_weights.download_container(endpoint, with_hf_token=hf_secret is not None),
            keys_secret_name=secret.metadata.name,
        )
        fence = vllm_network.network_policy(scope, child)
        egress = vllm_network.egress_policy(scope, child)
        fqdns = vllm_network.fqdn_egress_policy(scope, child)
        # Not before the HF token's Secret exists: an init container referring to a missing
        # Secret waits (CreateContainerConfigError) until it does.
        token = [hf_secret] if hf_secret else []
        workload = vllm_workload.stateful_set(
            scope,
            template,
            service_name=vllm_network.SERVICE_NAME,
            # No replica runs before the policy that fences it in.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[fence, egress, *([fqdns] if fqdns else []), *token]
            ),
        )
        vllm_workload.disruption_budget(scope, child)
        vllm_workload.scaled_object(
            scope, pulumi.ResourceOptions(parent=self, depends_on=[workload])
        )
        vllm_metrics.pod_monitor(scope, child)
        timeouts = vllm_workload.rollout_timeouts(endpoint)
        service = vllm_network.service(scope, timeouts, child)
        certificate = vllm_network.certificate(scope, child)
        edge: k8s.networking.v1.Ingress | k8s.apiextensions.CustomResource
        if endpoint.gateway is not None:
            edge = vllm_network.http_route(scope, backend_service=service, opts=child)
            # From the route's output, so whatever takes base_url depends on the route.
            self.base_url = edge.spec.apply(  # type: ignore[attr-defined]
                lambda spec: _published(name, endpoint.host, "HTTPRoute", _route_host(spec))
            )
        else:
            # Not before its certificate is issued: an Ingress naming a Secret that does not
            # exist yet serves the controller's placeholder, which Convai refuses.
            issued = pulumi.ResourceOptions(
                parent=self, depends_on=[certificate] if certificate else []
            )
            ingress = vllm_network.ingress(
                scope, backend_service=service, timeouts=timeouts, opts=issued
            )
            edge = ingress
            # From the Ingress's output, so whatever takes base_url depends on the Ingress.
            self.base_url = ingress.spec.apply(
                lambda spec: _published(name, endpoint.host, "Ingress", _ingress_host(spec))
            )
        self.model_name = pulumi.Output.from_input(endpoint.served_model_name)
        self.api_key = pulumi.Output.secret(keys[endpoint.api_key_in_use].result)
        self.ready: list[pulumi.Resource] = [workload, edge]
        if certificate is not None:
            self.ready.append(certificate)
        self.register_outputs(
            {"base_url": self.base_url, "model_name": self.model_name, "api_key": self.api_key}
        )


def _hf_token_secret(
    scope: EndpointScope, hf_token: pulumi.Output[str] | None, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret | None:
    """The Hugging Face token under a fixed name (vllm_weights.HF_TOKEN_SECRET), apart from the
    endpoint keys: the pod template names it the same whatever the token, so rotating it restarts
    no pod; the next init container to start reads the new one (docs/vllm.md, "Pinned weights")."""
    if hf_token is None:
        return None
    return k8s.core.v1.Secret(
        f"{scope.name}-hf-token",
        metadata=scope.metadata(vllm_weights.HF_TOKEN_SECRET),
        string_data={vllm_weights.HF_TOKEN_KEY: hf_token},
        opts=opts,
    )


def _key_name(name: str, slot: str) -> str:
    """Key "a" keeps the name, and so the URN, of the endpoint's one key from before."""
    return f"{name}-api-key" if slot == KEY_SLOTS[0] else f"{name}-api-key-{slot}"


class PublishedHostError(pulumi.RunError):
    """The edge reports another host than the stack declares: Convai must hear of neither (a
    RunError: Pulumi prints the sentence, not a traceback)."""


def _published(name: str, declared: str, kind: str, reported: str) -> str:
    """The URL Convai is given: the declared host's, once the edge reports serving it. A stale or
    unexpected output (seen once on a host change) would otherwise register the old URL, or skip
    the model's update, with the `up` reporting success."""
    if reported != declared:
        raise PublishedHostError(
            f"endpoint '{name}': the {kind} reports host {reported!r} where the stack declares "
            f"{declared!r}, so Convai is told of neither: run `pulumi refresh` on the stack, then "
            "`pulumi up` again (docs/vllm.md, 'Changing the host')"
        )
    return published_base_url(declared)


def _ingress_host(spec: k8s.networking.v1.outputs.IngressSpec) -> str:
    (rule,) = spec.rules or []
    return str(rule.host)


def _route_host(spec: dict[str, Any]) -> str:
    (host,) = spec["hostnames"]
    return str(host)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()

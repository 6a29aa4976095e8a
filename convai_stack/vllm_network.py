"""How Convai reaches vLLM: a Service in front of the replicas, and a TLS Ingress publishing /v1."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import VllmEndpoint

from .vllm_pod import PORT

SERVICE_NAME = "vllm"
"""Fixed, so the StatefulSet can name it without waiting for the Service's await, which waits
for the very pods the StatefulSet starts."""
ISSUED_SECRET = "vllm-tls"
"""Where cert-manager puts the certificate it issues. Not `<name>-tls`: on endpoints deployed
before the Certificate was declared, cert-manager's ingress-shim still manages that one."""
CERTIFICATE_TIMEOUTS = pulumi.CustomTimeouts(create="30m", update="30m")
"""An ACME order takes minutes; far longer means DNS or the issuer is wrong."""
API_PATH = "/v1"
"""The only path published: vLLM's key guards /v1, while /invocations, /pause, /update_weights and
/tokenize answer anyone (vLLM's security guide). Convai and the preflight call only /v1/*."""


def service(
    name: str,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    timeouts: pulumi.CustomTimeouts,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    # pulumi-kubernetes awaits ready endpoints, which exist only once a pod has loaded its
    # model: its 10-minute default would fail a cold start, so it gets the rollout's timeouts.
    return k8s.core.v1.Service(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVICE_NAME, namespace=namespace, labels=labels),
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port=PORT)],
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(custom_timeouts=timeouts)),
    )


def network_policy(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """Only the ingress controller's pods may open vLLM's port, and nothing else may reach the
    pods: the unauthenticated routes (/pause, /invocations...) stay out of the cluster's reach."""
    controller = k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": endpoint.ingress_namespace}
        ),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=endpoint.ingress_pod_labels),
    )
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[controller],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
                )
            ],
        ),
        opts=opts,
    )


DNS_PORT = 53
HTTPS_PORT = 443


def egress_policy(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """The pods may reach the cluster DNS and HTTPS outside the private ranges (the model hub),
    nothing else: not the metadata service's node credentials, not the API server, not the
    cluster's other services. A policy of its own, so the ingress fence is unchanged."""
    dns = k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={"kubernetes.io/metadata.name": endpoint.dns_namespace}
                ),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=endpoint.dns_pod_labels),
            )
        ],
        ports=[
            k8s.networking.v1.NetworkPolicyPortArgs(port=DNS_PORT, protocol="UDP"),
            k8s.networking.v1.NetworkPolicyPortArgs(port=DNS_PORT, protocol="TCP"),
        ],
    )
    https = k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(
                    cidr="0.0.0.0/0", except_=list(endpoint.egress_denied_cidrs)
                )
            )
        ],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=HTTPS_PORT, protocol="TCP")],
    )
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-egress",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Egress"],
            egress=[dns, https],
        ),
        opts=opts,
    )


def tls_secret(name: str, endpoint: VllmEndpoint) -> str:
    """The Secret the Ingress serves: issued by cert-manager, or brought by the operator."""
    return ISSUED_SECRET if endpoint.cluster_issuer else f"{name}-tls"


def certificate(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource | None:
    """cert-manager's Certificate for the host, awaited until Ready: until then the Ingress
    serves its controller's placeholder, which Convai would refuse."""
    if not endpoint.cluster_issuer:
        return None
    return k8s.apiextensions.CustomResource(
        f"{name}-certificate",
        api_version="cert-manager.io/v1",
        kind="Certificate",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="vllm",
            namespace=namespace,
            labels=labels,
            annotations={"pulumi.com/waitFor": "condition=Ready"},
        ),
        spec={
            "secretName": ISSUED_SECRET,
            "dnsNames": [endpoint.host],
            "issuerRef": {
                "name": endpoint.cluster_issuer,
                "kind": "ClusterIssuer",
                "group": "cert-manager.io",
            },
        },
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(custom_timeouts=CERTIFICATE_TIMEOUTS)
        ),
    )


def ingress(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    *,
    backend_service: k8s.core.v1.Service,
    timeouts: pulumi.CustomTimeouts,
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.Ingress:
    annotations = {
        # Completions stream for a while; the default 60 s would cut long answers.
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
        "nginx.ingress.kubernetes.io/proxy-body-size": "16m",
        # Streamed tokens go out as vLLM writes them, not when nginx's buffer fills.
        "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    }
    backend = k8s.networking.v1.IngressBackendArgs(
        service=k8s.networking.v1.IngressServiceBackendArgs(
            name=backend_service.metadata.name,
            port=k8s.networking.v1.ServiceBackendPortArgs(number=PORT),
        )
    )
    path = k8s.networking.v1.HTTPIngressPathArgs(path=API_PATH, path_type="Prefix", backend=backend)
    return k8s.networking.v1.Ingress(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            namespace=namespace, labels=labels, annotations=annotations
        ),
        spec=k8s.networking.v1.IngressSpecArgs(
            ingress_class_name=endpoint.ingress_class,
            tls=[
                k8s.networking.v1.IngressTLSArgs(
                    hosts=[endpoint.host], secret_name=tls_secret(name, endpoint)
                )
            ],
            rules=[
                k8s.networking.v1.IngressRuleArgs(
                    host=endpoint.host,
                    http=k8s.networking.v1.HTTPIngressRuleValueArgs(paths=[path]),
                )
            ],
        ),
        # Awaits the Service's endpoints too: the same timeouts.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(custom_timeouts=timeouts)),
    )

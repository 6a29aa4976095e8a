"""How Convai reaches vLLM: a Service in front of the replicas, and a TLS Ingress publishing /v1."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import API_PATH, VllmEndpoint

from .vllm_pod import PORT

SERVICE_NAME = "vllm"
"""Fixed, so the StatefulSet can name it without waiting for the Service's await, which waits
for the very pods the StatefulSet starts."""
ISSUED_SECRET = "vllm-tls"
"""Where cert-manager puts the certificate it issues. Not `<name>-tls`: on endpoints deployed
before the Certificate was declared, cert-manager's ingress-shim still manages that one."""
CERTIFICATE_TIMEOUTS = pulumi.CustomTimeouts(create="30m", update="30m")
"""An ACME order takes minutes; far longer means DNS or the issuer is wrong."""


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
    """Only the edge (the ingress controller's or the Gateway's proxy pods, and the source ranges
    of `ingress_cidrs`) and the metrics scraper, when stated, may open vLLM's port, and nothing
    else may reach the pods: the unauthenticated routes (/pause, /invocations...) stay out of
    the cluster's reach."""
    peers = []
    if endpoint.edge_pods is not None:
        peers.append([_pods(*endpoint.edge_pods)])
    if endpoint.ingress_cidrs:
        peers.append(
            [
                k8s.networking.v1.NetworkPolicyPeerArgs(
                    ip_block=k8s.networking.v1.IPBlockArgs(cidr=network)
                )
                for network in endpoint.ingress_cidrs
            ]
        )
    if endpoint.metrics is not None:
        # By pod label within its namespace, never the whole namespace: whoever may scrape
        # /metrics may also call the unguarded routes on the same port.
        peers.append(
            [_pods(endpoint.metrics.scraper_namespace, endpoint.metrics.scraper_pod_labels)]
        )
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=sources,
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
                )
                for sources in peers
            ],
        ),
        opts=opts,
    )


def _pods(namespace: str, labels: dict[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": namespace}
        ),
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
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
        to=[_pods(endpoint.dns_namespace, endpoint.dns_pod_labels)],
        ports=[
            k8s.networking.v1.NetworkPolicyPortArgs(port=DNS_PORT, protocol="UDP"),
            k8s.networking.v1.NetworkPolicyPortArgs(port=DNS_PORT, protocol="TCP"),
        ],
    )
    ipv4_denied, ipv6_denied = endpoint.egress_denied_by_family
    anywhere = [("0.0.0.0/0", ipv4_denied)]
    if ipv6_denied:
        # Python tries an AAAA address first: on a dual-stack cluster without this, a download
        # waits on dropped SYNs before it falls back to IPv4.
        anywhere.append(("::/0", ipv6_denied))
    https = k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr, except_=denied)
            )
            for cidr, denied in anywhere
        ],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=HTTPS_PORT, protocol="TCP")],
    )
    return k8s.networking.v1.NetworkPolicy(
        f"{name}-egress",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            policy_types=["Egress"],
            # With an FQDN allow-list, HTTPS is the Cilium policy's alone: policies add up, so
            # this one's HTTPS-anywhere rule would void the list.
            egress=[dns] if endpoint.egress_fqdns else [dns, https],
        ),
        opts=opts,
    )


def fqdn_egress_policy(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource | None:
    """HTTPS only to the listed names, as Cilium enforces it: its DNS proxy sees each lookup
    (the DNS rule's `dns` part) and admits the addresses the listed names resolve to."""
    if not endpoint.egress_fqdns:
        return None
    dns_pods = {
        "k8s:io.kubernetes.pod.namespace": endpoint.dns_namespace,
        **endpoint.dns_pod_labels,
    }
    return k8s.apiextensions.CustomResource(
        f"{name}-egress-fqdns",
        api_version="cilium.io/v2",
        kind="CiliumNetworkPolicy",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="vllm-egress-fqdns", namespace=namespace, labels=labels
        ),
        spec={
            "endpointSelector": {"matchLabels": labels},
            "egress": [
                {
                    "toEndpoints": [{"matchLabels": dns_pods}],
                    "toPorts": [
                        {
                            "ports": [{"port": str(DNS_PORT), "protocol": "ANY"}],
                            "rules": {"dns": [{"matchPattern": "*"}]},
                        }
                    ],
                },
                {
                    "toFQDNs": [_fqdn_selector(f) for f in endpoint.egress_fqdns],
                    "toPorts": [{"ports": [{"port": str(HTTPS_PORT), "protocol": "TCP"}]}],
                },
            ],
        },
        opts=opts,
    )


def _fqdn_selector(pattern: str) -> dict[str, str]:
    return {"matchPattern": pattern} if pattern.startswith("*") else {"matchName": pattern}


def tls_secret(name: str, endpoint: VllmEndpoint) -> str:
    """The Secret the Ingress serves: issued by cert-manager, or brought by the operator."""
    return ISSUED_SECRET if endpoint.issuer else f"{name}-tls"


def certificate(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource | None:
    """cert-manager's Certificate for the host, awaited until Ready: until then the Ingress
    serves its controller's placeholder, which Convai would refuse."""
    if not endpoint.issuer:
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
                "name": endpoint.issuer,
                "kind": "ClusterIssuer",
                "group": "cert-manager.io",
            },
        },
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(custom_timeouts=CERTIFICATE_TIMEOUTS)
        ),
    )


STREAM_TIMEOUT = 600
"""Seconds a completion may stream: the Ingress's read timeout, the HTTPRoute's request timeout."""


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
        "nginx.ingress.kubernetes.io/proxy-read-timeout": str(STREAM_TIMEOUT),
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


ROUTE_NAME = "vllm"
ROUTE_READY = json.dumps(
    [
        f'jsonpath={{.status.parents[*].conditions[?(@.type=="{condition}")].status}}=True'
        for condition in ("Accepted", "ResolvedRefs")
    ]
)
"""What the HTTPRoute is awaited for (pulumi-kubernetes waits for every expression of a list): its
Gateway's controller accepted it, and resolved its backend, the Service and port. Accepted alone
says the route attached; a wrong Service or port, or a backend the Gateway may not reach, shows
only in ResolvedRefs, and the route then answers 500 to every request."""
ROUTE_TIMEOUTS = pulumi.CustomTimeouts(create="10m", update="10m")
"""A controller accepts a route and resolves its backend in seconds; created after the Service has
ready endpoints, the route waits for nothing else. Longer means the Gateway does not admit it
(allowedRoutes) or cannot reach its backend (the route's ResolvedRefs condition says why)."""


def http_route(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    *,
    backend_service: k8s.core.v1.Service,
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """The Gateway API's edge: the same host, /v1 alone, and streams as long as the Ingress's.
    TLS is the Gateway listener's, so the route carries no certificate."""
    assert endpoint.gateway is not None
    parent: dict[str, str] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": endpoint.gateway.name,
        "namespace": endpoint.gateway.namespace,
    }
    if endpoint.gateway.section_name:
        parent["sectionName"] = endpoint.gateway.section_name
    return k8s.apiextensions.CustomResource(
        f"{name}-route",
        api_version="gateway.networking.k8s.io/v1",
        kind="HTTPRoute",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=ROUTE_NAME,
            namespace=namespace,
            labels=labels,
            annotations={"pulumi.com/waitFor": ROUTE_READY},
        ),
        spec={
            "parentRefs": [parent],
            "hostnames": [endpoint.host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": API_PATH}}],
                    "backendRefs": [
                        {"name": backend_service.metadata.name, "port": PORT, "kind": "Service"}
                    ],
                    # Gateways default to seconds (Envoy's route timeout is 15 s).
                    "timeouts": {"request": f"{STREAM_TIMEOUT}s"},
                }
            ],
        },
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(custom_timeouts=ROUTE_TIMEOUTS)
        ),
    )

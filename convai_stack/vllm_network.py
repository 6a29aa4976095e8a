"""How Convai reaches vLLM: a Service in front of the replicas, and a TLS Ingress publishing /v1."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import API_PATH

from .vllm_pod import PORT
from .vllm_scope import EndpointScope, with_timeouts

SERVICE_NAME = "vllm"
"""Fixed, so the StatefulSet can name it without waiting for the Service's await, which waits
for the very pods the StatefulSet starts."""
ISSUED_SECRET = "vllm-tls"
"""Where cert-manager puts the certificate it issues. Not `<name>-tls`: on endpoints deployed
before the Certificate was declared, cert-manager's ingress-shim still manages that one."""
CERTIFICATE_TIMEOUTS = pulumi.CustomTimeouts(create="30m", update="30m")
"""An ACME order takes minutes; far longer means DNS or the issuer is wrong."""


def service(
    scope: EndpointScope, timeouts: pulumi.CustomTimeouts, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    # pulumi-kubernetes awaits ready endpoints, which exist only once a pod has loaded its
    # model: its 10-minute default would fail a cold start, so it gets the rollout's timeouts.
    return k8s.core.v1.Service(
        scope.name,
        metadata=scope.metadata(SERVICE_NAME),
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=scope.labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port=PORT)],
        ),
        opts=with_timeouts(opts, timeouts),
    )


def network_policy(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.networking.v1.NetworkPolicy:
    """Only the edge (the ingress controller's or the Gateway's proxy pods, and the source ranges
    of `ingress_cidrs`) and the metrics scraper, when stated, may open vLLM's port, and nothing
    else may reach the pods: the unauthenticated routes (/pause, /invocations...) stay out of
    the cluster's reach."""
    endpoint = scope.endpoint
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
        scope.name,
        metadata=scope.metadata(),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=scope.pod_selector(),
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
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.networking.v1.NetworkPolicy:
    """The pods may reach the cluster DNS and HTTPS outside the private ranges (the model hub),
    nothing else: not the metadata service's node credentials, not the API server, not the
    cluster's other services. A policy of its own, so the ingress fence is unchanged."""
    endpoint = scope.endpoint
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
        f"{scope.name}-egress",
        metadata=scope.metadata(),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=scope.pod_selector(),
            policy_types=["Egress"],
            # With an FQDN allow-list, HTTPS is the Cilium policy's alone: policies add up, so
            # this one's HTTPS-anywhere rule would void the list.
            egress=[dns] if endpoint.egress_fqdns else [dns, https],
        ),
        opts=opts,
    )


def fqdn_egress_policy(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource | None:
    """HTTPS only to the listed names, as Cilium enforces it: its DNS proxy sees each lookup
    (the DNS rule's `dns` part) and admits the addresses the listed names resolve to."""
    endpoint = scope.endpoint
    if not endpoint.egress_fqdns:
        return None
    dns_pods = {
        "k8s:io.kubernetes.pod.namespace": endpoint.dns_namespace,
        **endpoint.dns_pod_labels,
    }
    return scope.custom_resource(
        "egress-fqdns",
        api_version="cilium.io/v2",
        kind="CiliumNetworkPolicy",
        metadata=scope.metadata("vllm-egress-fqdns"),
        spec={
            "endpointSelector": {"matchLabels": scope.labels},
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


def tls_secret(scope: EndpointScope) -> str:
    """The Secret the Ingress serves: issued by cert-manager, or brought by the operator."""
    return ISSUED_SECRET if scope.endpoint.issuer else f"{scope.name}-tls"


def certificate(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource | None:
    """cert-manager's Certificate for the host, awaited until Ready: until then the Ingress
    serves its controller's placeholder, which Convai would refuse."""
    endpoint = scope.endpoint
    if not endpoint.issuer:
        return None
    return scope.custom_resource(
        "certificate",
        api_version="cert-manager.io/v1",
        kind="Certificate",
        metadata=scope.metadata("vllm", annotations={"pulumi.com/waitFor": "condition=Ready"}),
        spec={
            "secretName": ISSUED_SECRET,
            "dnsNames": [endpoint.host],
            "issuerRef": {
                "name": endpoint.issuer,
                "kind": "ClusterIssuer",
                "group": "cert-manager.io",
            },
        },
        opts=with_timeouts(opts, CERTIFICATE_TIMEOUTS),
    )


STREAM_TIMEOUT = 600
"""Seconds a completion may stream: the Ingress's read timeout, the HTTPRoute's request timeout."""


def ingress(
    scope: EndpointScope,
    *,
    backend_service: k8s.core.v1.Service,
    timeouts: pulumi.CustomTimeouts,
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.Ingress:
    endpoint = scope.endpoint
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
        scope.name,
        metadata=scope.metadata(annotations=annotations),
        spec=k8s.networking.v1.IngressSpecArgs(
            ingress_class_name=endpoint.ingress_class,
            tls=[
                k8s.networking.v1.IngressTLSArgs(
                    hosts=[endpoint.host], secret_name=tls_secret(scope)
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
        opts=with_timeouts(opts, timeouts),
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
    scope: EndpointScope,
    *,
    backend_service: k8s.core.v1.Service,
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """The Gateway API's edge: the same host, /v1 alone, and streams as long as the Ingress's.
    TLS is the Gateway listener's, so the route carries no certificate."""
    endpoint = scope.endpoint
    assert endpoint.gateway is not None
    parent: dict[str, str] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": endpoint.gateway.name,
        "namespace": endpoint.gateway.namespace,
    }
    if endpoint.gateway.section_name:
        parent["sectionName"] = endpoint.gateway.section_name
    return scope.custom_resource(
        "route",
        api_version="gateway.networking.k8s.io/v1",
        kind="HTTPRoute",
        metadata=scope.metadata(ROUTE_NAME, annotations={"pulumi.com/waitFor": ROUTE_READY}),
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
        opts=with_timeouts(opts, ROUTE_TIMEOUTS),
    )

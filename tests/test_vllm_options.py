"""The optional parts of a vLLM endpoint, rendered under mocks: metrics (a scrape path and its
network rule), autoscaling on queue depth, the Gateway API edge, and the FQDN egress allow-list.
tests/test_kubernetes_options.py runs them on a real Kubernetes API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convai_provider import TYPE_TOKEN
from convai_stack.stack_config import (
    HF_HUB_FQDNS,
)
from convai_stack.vllm_pod import TERMINATION_GRACE
from convai_stack.vllm_workload import replica_budget
from testkit.engine import ProgramRun, Registration
from tests.test_rendered_manifests import assert_golden, rendered
from tests.test_stacks import (
    STATEFUL_SET,
    _endpoints,
    assert_refused_before_any_resource,
    broken,
    child,
    run_stack,
    seconds,
    vllm_endpoints,
)

PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
METRICS = {
    "scraper_namespace": "monitoring",
    "scraper_pod_labels": {"app.kubernetes.io/name": "prometheus"},
    "pod_monitor_labels": {"release": "kube-prometheus-stack"},
}
AUTOSCALING = {"min_replicas": 1, "max_replicas": 3, "prometheus_url": PROMETHEUS}
ENVOY_LABELS = {
    "gateway.envoyproxy.io/owning-gateway-name": "public",
    "gateway.envoyproxy.io/owning-gateway-namespace": "gateways",
}
ENVOY_PROXIES = {"namespace": "envoy-gateway-system", "pod_labels": ENVOY_LABELS}
GATEWAY = {
    "name": "public",
    "namespace": "gateways",
    "section_name": "https",
    "dataplane": ENVOY_PROXIES,
}
MANAGED_GATEWAY = {"name": "public", "namespace": "gateways"}
GKE_LOAD_BALANCERS = ["35.191.0.0/16", "130.211.0.0/22"]
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
CILIUM_POLICY = "kubernetes:cilium.io/v2:CiliumNetworkPolicy"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"


def changed(fields: dict[str, Any]) -> dict[str, str]:
    """Staging's runtime config, its endpoint's fields set (None: left out)."""

    def mutate(config: dict[str, Any]) -> None:
        endpoint = _endpoints(config)[0]
        endpoint.update(fields)
        for key, value in fields.items():
            if value is None:
                endpoint.pop(key)

    return broken(mutate)


def staging_with(**fields: Any) -> ProgramRun:
    return run_stack("staging", changed(fields))


def ingress_rules(run: ProgramRun) -> list[dict[str, Any]]:
    policy = child(run, "networking.k8s.io/v1:NetworkPolicy", "llama-8b")
    rules: list[dict[str, Any]] = policy.inputs["spec"]["ingress"]
    return rules


def only(run: ProgramRun, type_: str) -> Registration:
    (registration,) = run.of_type(type_)
    return registration


EVERY_OPTION = {
    "replicas": None,
    "cluster_issuer": None,
    "metrics": METRICS,
    "autoscaling": AUTOSCALING,
    "gateway": GATEWAY,
    "egress_fqdns": True,
}


def test_every_option_renders_as_the_golden_file() -> None:
    """Staging with every option on, committed as tests/golden/staging-options.yaml: each change
    to what the options render shows as a diff to review."""
    assert_golden("staging-options", rendered("staging", changed(EVERY_OPTION)))


def test_no_option_is_on_by_default() -> None:
    run = run_stack("staging")
    for kind in (SCALED_OBJECT, HTTP_ROUTE, CILIUM_POLICY):
        assert run.of_type(kind) == []
    assert child(run, STATEFUL_SET, "llama-8b").ignore_changes == []


# metrics ------------------------------------------------------------------------------------------


def test_the_scraper_reaches_vllm_by_its_pod_labels_and_a_pod_monitor_names_the_replicas() -> None:
    run = staging_with(metrics=METRICS)
    rules = ingress_rules(run)
    scraper = {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
        "ports": [{"port": 8000, "protocol": "TCP"}],
    }
    # One rule per peer, each naming pods: never a namespace's every pod.
    assert scraper in rules and len(rules) == 2
    assert all(peer["podSelector"]["matchLabels"] for rule in rules for peer in rule["from"])

    monitor = only(run, POD_MONITOR).inputs
    labels = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama-8b"}
    assert monitor["metadata"]["namespace"] == "vllm-llama-8b"
    assert monitor["metadata"]["labels"] == {**labels, "release": "kube-prometheus-stack"}
    assert monitor["spec"]["selector"] == {"matchLabels": labels}
    (scrape,) = monitor["spec"]["podMetricsEndpoints"]
    assert scrape["port"] == "http" and scrape["path"] == "/metrics"


def test_a_cluster_without_the_prometheus_operator_gets_the_rule_only() -> None:
    run = staging_with(metrics={**METRICS, "pod_monitor": False})
    assert len(ingress_rules(run)) == 2
    assert run.of_type(POD_MONITOR) == []


def test_without_metrics_only_the_ingress_controller_reaches_vllm() -> None:
    run = run_stack("staging")
    assert len(ingress_rules(run)) == 1
    assert run.of_type(POD_MONITOR) == []


# autoscaling --------------------------------------------------------------------------------------


def test_autoscaling_leaves_the_replica_count_to_keda_on_requests_per_replica() -> None:
    run = staging_with(
        replicas=None, metrics=METRICS, autoscaling={**AUTOSCALING, "target_load": 12}
    )
    (endpoint,) = vllm_endpoints("staging")
    workload = child(run, STATEFUL_SET, endpoint.name)
    assert workload.inputs["spec"]["replicas"] == 1  # the floor, at creation only
    assert workload.ignore_changes == ["spec.replicas"]
    # The deadline counts every replica that may run, not the count of the moment, and each
    # old replica's drain before its successor starts.
    assert seconds(workload.custom_timeouts["update"]) == 3 * (
        replica_budget(endpoint) + TERMINATION_GRACE
    )

    scaler = only(run, SCALED_OBJECT)
    spec = scaler.inputs["spec"]
    assert scaler.inputs["metadata"]["namespace"] == "vllm-llama-8b"
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "vllm",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    # Running plus waiting: waiting alone stays 0 until the batch is full, then jumps.
    selector = '{namespace="vllm-llama-8b",model_name="llama-3.1-8b"}'
    assert trigger["metadata"] == {
        "serverAddress": PROMETHEUS,
        "query": f"sum(vllm:num_requests_running{selector}) + "
        f"sum(vllm:num_requests_waiting{selector})",
        "threshold": "12",
    }
    # A burst of seconds starts no replica; one replica at a time while the new one loads.
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 60,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
    }
    assert workload.urn in scaler.dependencies
    # It may run two: drains then take one at a time, whatever the count.
    assert only(run, PDB).inputs["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("floor", [1, 2])
def test_the_autoscalers_annotations_follow_the_floor_not_the_count(floor: int) -> None:
    one = run_stack("staging")
    scaled = staging_with(
        replicas=None, metrics=METRICS, autoscaling={**AUTOSCALING, "min_replicas": floor}
    )
    (endpoint,) = vllm_endpoints("staging")
    before = child(one, STATEFUL_SET, endpoint.name).inputs["spec"]["template"]
    after = child(scaled, STATEFUL_SET, endpoint.name).inputs["spec"]["template"]
    if floor == 1:
        # Switching autoscaling on from one fixed replica changes no pod: nothing restarts.
        assert after == before
    else:
        # Two always run: the budget takes one at a time, and Karpenter may replace the node.
        assert "karpenter.sh/do-not-disrupt" not in after["metadata"]["annotations"]


def test_a_fixed_single_replica_has_no_autoscaler_and_no_budget() -> None:
    run = run_stack("staging")
    assert run.of_type(SCALED_OBJECT) == [] and run.of_type(PDB) == []


# the Gateway API ----------------------------------------------------------------------------------


def test_the_gateway_edge_routes_only_v1_to_the_service_with_long_streams() -> None:
    run = staging_with(gateway=GATEWAY, cluster_issuer=None)
    (endpoint,) = vllm_endpoints("staging")
    assert run.of_type(INGRESS) == [] and run.of_type(CERTIFICATE) == []
    route = only(run, HTTP_ROUTE)
    metadata, spec = route.inputs["metadata"], route.inputs["spec"]
    assert metadata["namespace"] == "vllm-llama-8b"
    # Accepted (attached to the Gateway) and ResolvedRefs (its Service and port found): both.
    assert json.loads(metadata["annotations"]["pulumi.com/waitFor"]) == [
        'jsonpath={.status.parents[*].conditions[?(@.type=="Accepted")].status}=True',
        'jsonpath={.status.parents[*].conditions[?(@.type=="ResolvedRefs")].status}=True',
    ]
    assert spec["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert spec["hostnames"] == [endpoint.host]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    assert rule["backendRefs"] == [{"name": "vllm", "port": 8000, "kind": "Service"}]
    assert rule["timeouts"] == {"request": "600s"}
    # Created once the Service has ready pods; accepting takes a controller seconds.
    assert seconds(route.custom_timeouts["create"]) == 600
    assert child(run, "core/v1:Service", endpoint.name).urn in route.dependencies

    # The model is registered with the route's host, once the route is accepted.
    (model,) = run.of_type(TYPE_TOKEN)
    assert model.inputs["base_url"] == f"https://{endpoint.host}/v1"
    assert model.property_dependencies["base_url"] == [route.urn]


def pods_rule(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "podSelector": {"matchLabels": labels},
            }
        ],
        "ports": [{"port": 8000, "protocol": "TCP"}],
    }


def ranges_rule(networks: list[str]) -> dict[str, Any]:
    return {
        "from": [{"ipBlock": {"cidr": network}} for network in networks],
        "ports": [{"port": 8000, "protocol": "TCP"}],
    }


def test_behind_a_gateway_its_proxies_reach_vllm_and_ingress_nginx_does_not() -> None:
    run = staging_with(gateway=GATEWAY, cluster_issuer=None)
    assert ingress_rules(run) == [pods_rule("envoy-gateway-system", ENVOY_LABELS)]


def test_a_cloud_managed_gateway_is_admitted_by_its_source_ranges_alone() -> None:
    run = staging_with(
        gateway=MANAGED_GATEWAY, cluster_issuer=None, ingress_cidrs=GKE_LOAD_BALANCERS
    )
    assert ingress_rules(run) == [ranges_rule(GKE_LOAD_BALANCERS)]


def test_source_ranges_add_to_the_ingress_controllers_pods() -> None:
    """An ingress-nginx on the host network connects from the nodes' addresses."""
    run = staging_with(ingress_cidrs=["10.0.0.0/16", "fd00:10::/64"])
    assert ingress_rules(run) == [
        pods_rule(
            "ingress-nginx",
            {
                "app.kubernetes.io/name": "ingress-nginx",
                "app.kubernetes.io/component": "controller",
            },
        ),
        ranges_rule(["10.0.0.0/16", "fd00:10::/64"]),
    ]


# FQDN egress --------------------------------------------------------------------------------------


def test_the_hubs_default_names_match_on_every_cilium() -> None:
    """`*` in a Cilium matchPattern stops at a dot: `*.hf.co` would miss the Xet hosts, so the
    default list names them, and keeps a pattern only for one label (`us.aws.cdn.hf.co`)."""
    run = staging_with(egress_fqdns=True)
    https = only(run, CILIUM_POLICY).inputs["spec"]["egress"][1]
    names = [selector.get("matchName") for selector in https["toFQDNs"]]
    assert {"huggingface.co", "cas-bridge.xethub.hf.co", "transfer.xethub.hf.co"} <= set(names)
    assert [s for s in https["toFQDNs"] if "matchPattern" in s] == [
        {"matchPattern": "*.aws.cdn.hf.co"}
    ]
    assert len(https["toFQDNs"]) == len(HF_HUB_FQDNS)


def test_a_multi_level_pattern_is_passed_to_cilium_as_a_pattern() -> None:
    run = staging_with(egress_fqdns=["huggingface.co", "**.hf.co"])
    https = only(run, CILIUM_POLICY).inputs["spec"]["egress"][1]
    assert https["toFQDNs"] == [{"matchName": "huggingface.co"}, {"matchPattern": "**.hf.co"}]


def test_an_fqdn_allow_list_replaces_https_anywhere_with_named_hosts() -> None:
    run = staging_with(egress_fqdns=["huggingface.co", "*.aws.cdn.hf.co"])
    egress = child(run, "networking.k8s.io/v1:NetworkPolicy", "llama-8b-egress").inputs["spec"]
    # Policies add up: HTTPS anywhere here would void the list.
    assert [rule["ports"][0]["port"] for rule in egress["egress"]] == [53]
    policy = only(run, CILIUM_POLICY).inputs
    labels = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama-8b"}
    assert policy["spec"]["endpointSelector"] == {"matchLabels": labels}
    dns, https = policy["spec"]["egress"]
    assert dns["toEndpoints"] == [
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}
    ]
    assert dns["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}
    assert https["toFQDNs"] == [
        {"matchName": "huggingface.co"},
        {"matchPattern": "*.aws.cdn.hf.co"},
    ]
    assert https["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    workload = child(run, STATEFUL_SET, "llama-8b")
    assert only(run, CILIUM_POLICY).urn in workload.dependencies


# refusals -----------------------------------------------------------------------------------------

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "scale to zero": (
        {"replicas": None, "metrics": METRICS, "autoscaling": {**AUTOSCALING, "min_replicas": 0}},
        "convai-models:endpoints[0].autoscaling.min_replicas: must be at least 1: scaling to zero "
        "is not offered, since at zero no vLLM runs to report a queue",
    ),
    "autoscaling without metrics": (
        {"replicas": None, "autoscaling": AUTOSCALING},
        "autoscaling needs metrics: KEDA reads vLLM's queue depth from the Prometheus that "
        "scrapes it; set metrics too",
    ),
    "replicas beside autoscaling": (
        {"replicas": 2, "metrics": METRICS, "autoscaling": AUTOSCALING},
        "replicas: leave it out when autoscaling is set",
    ),
    "ceiling below the floor": (
        {"replicas": None, "metrics": METRICS, "autoscaling": {**AUTOSCALING, "max_replicas": 0}},
        "convai-models:endpoints[0].autoscaling.max_replicas: must be at least 1",
    ),
    "ceiling below a floor of two": (
        {
            "replicas": None,
            "metrics": METRICS,
            "autoscaling": {**AUTOSCALING, "min_replicas": 3, "max_replicas": 2},
        },
        "max_replicas (2) must be at least min_replicas (3)",
    ),
    "a certificate of our own behind a gateway": (
        {"gateway": GATEWAY},
        "cluster_issuer: leave it out when gateway is set",
    ),
    "an ingress class behind a gateway": (
        {"gateway": GATEWAY, "cluster_issuer": None, "ingress_class": "nginx"},
        "ingress_class: leave it out when gateway is set",
    ),
    "an empty fqdn list": (
        {"egress_fqdns": []},
        "egress_fqdns: empty would allow no HTTPS at all",
    ),
    "a gateway that nobody may forward from": (
        {"gateway": MANAGED_GATEWAY, "cluster_issuer": None},
        "gateway.dataplane: name the Gateway's proxy pods, or set ingress_cidrs to the ranges a "
        "cloud-managed Gateway connects from: otherwise the endpoint's NetworkPolicy admits nobody "
        "from the Gateway, and every request through it is dropped (a 503). For Envoy Gateway: "
        "dataplane: {namespace: envoy-gateway-system, pod_labels: "
        "{gateway.envoyproxy.io/owning-gateway-name: public, "
        "gateway.envoyproxy.io/owning-gateway-namespace: gateways}}",
    ),
    "ingress controller pods behind a gateway": (
        {"gateway": GATEWAY, "cluster_issuer": None, "ingress_namespace": "envoy-gateway-system"},
        "ingress_namespace: leave it out when gateway is set: the Gateway's proxies are "
        "gateway.dataplane.namespace",
    ),
    "gateway proxies that are a whole namespace": (
        {"gateway": {**GATEWAY, "dataplane": {**ENVOY_PROXIES, "pod_labels": {}}}},
        "pod_labels must name the Gateway's proxy pods",
    ),
    "a source range with host bits": (
        {"ingress_cidrs": ["35.191.0.1/16"]},
        "convai-models:endpoints[0].ingress_cidrs[0]: must be an IPv4 or IPv6 network such as "
        "10.0.0.0/8 or fc00::/7, its host bits zero (got '35.191.0.1/16')",
    ),
    "a source range as a netmask": (
        {"ingress_cidrs": ["35.191.0.0/255.255.0.0"]},
        "convai-models:endpoints[0].ingress_cidrs[0]: must be written '35.191.0.0/16'",
    ),
    "a source range without its length": (
        {"ingress_cidrs": ["130.211.0.0/22", "10.0.0.7"]},
        "convai-models:endpoints[0].ingress_cidrs[1]: must be written '10.0.0.7/32'",
    ),
    "a source range that is everyone": (
        {"ingress_cidrs": ["::/0"]},
        "convai-models:endpoints[0].ingress_cidrs: ::/0 admits every address to vLLM's port",
    ),
    "no source ranges": (
        {"ingress_cidrs": []},
        "ingress_cidrs: empty admits nothing more; list ranges or leave it out",
    ),
    "a wildcard in the middle of a name": (
        {"egress_fqdns": ["cas-bridge.*.hf.co"]},
        "convai-models:endpoints[0].egress_fqdns[0]: must be a DNS name such as huggingface.co",
    ),
    "three stars": (
        {"egress_fqdns": ["***.hf.co"]},
        "convai-models:endpoints[0].egress_fqdns[0]: must be a DNS name such as huggingface.co",
    ),
    "a url as an fqdn": (
        {"egress_fqdns": ["https://huggingface.co"]},
        "convai-models:endpoints[0].egress_fqdns[0]: must be a DNS name such as huggingface.co",
    ),
    "the replaced queue_depth": (
        {"replicas": None, "metrics": METRICS, "autoscaling": {**AUTOSCALING, "queue_depth": 4}},
        "queue_depth is replaced by target_load: requests per replica, running plus waiting",
    ),
    "a scraper that is a whole namespace": (
        {"metrics": {**METRICS, "scraper_pod_labels": {}}},
        "scraper_pod_labels must name the scraper's pods",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_options_that_cannot_work_are_refused_before_any_resource(case: str) -> None:
    fields, expected = REFUSED[case]
    assert_refused_before_any_resource(changed(fields), expected)

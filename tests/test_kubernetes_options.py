"""A vLLM endpoint's options on a real Kubernetes API: metrics, autoscaling, the Gateway API edge
and the FQDN egress policy, switched on for staging's running endpoint.

The API server judges each resource against the upstream CRD schemas (PodMonitor, HTTPRoute,
ScaledObject: testkit/kube_manifests/crds.yaml, vendored by scripts/vendor-crds); the real
provider plans the switch; kwok plays the Gateway's controller, and `kubectl scale` plays KEDA's
HorizontalPodAutoscaler (KEDA's operator does not run here). The fixtures are
tests/test_kubernetes_stacks.py's; docs/kubernetes-tests.md says what the cluster is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from testkit.convai import live
from tests import test_kubernetes_stacks as stacks
from tests.test_kubernetes_stacks import (
    STATEFUL_SET,
    Deployment,
    assert_gone,
    first_endpoint,
    new_image,
)

cluster = stacks.cluster
published = stacks.published
deploy = stacks.deploy

NAMESPACE = "vllm-llama-8b"
HOST = "llama-8b.staging.llm.example.com"
SCALED_BY_THE_AUTOSCALER = 3
PODS_READY_WITHIN = 60.0


def every_option(config: dict[str, Any]) -> None:
    endpoint = first_endpoint(config)
    del endpoint["replicas"], endpoint["cluster_issuer"]
    endpoint.update(
        metrics={"pod_monitor_labels": {"release": "kube-prometheus-stack"}},
        autoscaling={
            "min_replicas": 1,
            "max_replicas": 4,
            "prometheus_url": "http://prometheus-operated.monitoring.svc:9090",
        },
        gateway={
            "name": "public",
            "namespace": "gateways",
            "section_name": "https",
            "dataplane": {
                "namespace": "envoy-gateway-system",
                "pod_labels": {
                    "gateway.envoyproxy.io/owning-gateway-name": "public",
                    "gateway.envoyproxy.io/owning-gateway-namespace": "gateways",
                },
            },
        },
        egress_fqdns=True,
    )


def fixed_at(replicas: int) -> Callable[[dict[str, Any]], None]:
    def fixed(config: dict[str, Any]) -> None:
        endpoint = first_endpoint(config)
        endpoint.pop("autoscaling", None)
        endpoint["replicas"] = replicas

    return fixed


def the_workload(deployment: Deployment) -> dict[str, Any]:
    (workload,) = deployment.cluster.objects("statefulsets", NAMESPACE)
    return workload


def ready_pods(deployment: Deployment) -> list[dict[str, Any]]:
    return [
        pod
        for pod in deployment.cluster.objects("pods", NAMESPACE)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]


def wait_for_ready_pods(deployment: Deployment, count: int) -> None:
    deadline = time.monotonic() + PODS_READY_WITHIN
    while len(ready_pods(deployment)) != count:
        assert time.monotonic() < deadline, f"{count} ready vLLM pods never came"
        time.sleep(0.5)


def test_options_switch_on_without_a_restart_and_the_autoscaler_keeps_its_count(
    deploy: Callable[[str], Deployment],
) -> None:
    staging = deploy("staging")
    staging.project.up()
    pods_before = {p["metadata"]["uid"] for p in ready_pods(staging)}

    # Switching every option on keeps the pods: the StatefulSet is left as it is (its replica
    # count now the autoscaler's), the edge moves from the Ingress to an HTTPRoute.
    plan = staging.plan(every_option)
    assert plan.exit_code == 0, plan.output
    assert plan.ops(STATEFUL_SET, "llama-8b") == {"same"}
    assert plan.ops("kubernetes:networking.k8s.io/v1:Ingress", "llama-8b") == {"delete"}
    for kind, name in [
        ("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "llama-8b-route"),
        ("kubernetes:monitoring.coreos.com/v1:PodMonitor", "llama-8b-metrics"),
        ("kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-8b-scaler"),
        ("kubernetes:cilium.io/v2:CiliumNetworkPolicy", "llama-8b-egress-fqdns"),
    ]:
        assert plan.ops(kind, name) == {"create"}, (kind, plan.changed())

    every_option(staging.config)
    staging.configure()
    staging.project.up()
    assert {p["metadata"]["uid"] for p in ready_pods(staging)} == pods_before
    # Admitted against the upstream schemas, and the route accepted by its Gateway's controller.
    for kind in ("podmonitors", "scaledobjects", "httproutes", "ciliumnetworkpolicies"):
        assert len(staging.cluster.objects(kind, NAMESPACE)) == 1, kind
    assert staging.cluster.objects("ingresses", NAMESPACE) == []
    assert staging.cluster.objects("certificates", NAMESPACE) == []
    # Awaited until its backend resolved too: kwok's controller accepts the route first and
    # resolves it seconds later, and the await ends with the route as it then was.
    (parent,) = staging.project.resources()["llama-8b-route"]["outputs"]["status"]["parents"]
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {
        "Accepted": "True",
        "ResolvedRefs": "True",
    }
    (model,) = live(staging.convai).values()
    assert model["base_url"] == f"https://{HOST}/v1"
    # The host now reaches vLLM through the route alone: the Ingress is gone.
    assert not isinstance(staging.endpoints.behaviour(HOST), int)

    # KEDA's HorizontalPodAutoscaler scales the StatefulSet through its scale subresource.
    staging.cluster.kubectl(
        "scale", "statefulset/vllm", "-n", NAMESPACE, f"--replicas={SCALED_BY_THE_AUTOSCALER}"
    )
    wait_for_ready_pods(staging, SCALED_BY_THE_AUTOSCALER)
    staging.project.run("preview", "--expect-no-changes")

    # A change to the pods rolls them and leaves the count where the autoscaler put it.
    new_image(staging.config)
    staging.configure()
    staging.project.up()
    workload = the_workload(staging)
    assert workload["spec"]["replicas"] == SCALED_BY_THE_AUTOSCALER
    assert workload["status"]["updatedReplicas"] == SCALED_BY_THE_AUTOSCALER
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":v0.34.0")
    staging.project.run("preview", "--expect-no-changes")

    # Autoscaling off: `replicas` declared at another count than the autoscaler's is a field
    # conflict the API server refuses (the HPA's manager holds it), at preview, changing nothing.
    plan = staging.plan(fixed_at(2))
    assert plan.exit_code != 0
    assert "conflict" in plan.output and ".spec.replicas" in plan.output
    # At the autoscaler's count (docs/vllm.md: pin min = max first), the count is shared, then
    # Pulumi's; the ScaledObject goes.
    fixed_at(SCALED_BY_THE_AUTOSCALER)(staging.config)
    staging.configure()
    staging.project.up()
    assert the_workload(staging)["spec"]["replicas"] == SCALED_BY_THE_AUTOSCALER
    assert staging.cluster.objects("scaledobjects", NAMESPACE) == []
    staging.project.run("preview", "--expect-no-changes")

    staging.project.destroy()
    assert_gone(staging)

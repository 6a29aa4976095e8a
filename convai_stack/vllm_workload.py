"""How vLLM replicas run and roll: a StatefulSet in which every replica owns its model cache.

One ReadWriteOnce claim mounted by every replica cannot work: replicas on different nodes stay
in ContainerCreating (Multi-Attach). A claim per replica (volumeClaimTemplates) works on every
cluster's default block storage, loads weights at local-disk speed, and lets replicas roll one
at a time. docs/vllm.md, "What an endpoint is made of, and why", gives the trade-offs, and
docs/operations.md the migration from a Deployment.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import VllmEndpoint

from .vllm_pod import CACHE_VOLUME, TERMINATION_GRACE
from .vllm_scope import EndpointScope

WORKLOAD_NAME = "vllm"
"""Fixed (one workload per namespace), so pods and claims have names an operator can type:
pod `vllm-0`, claim `model-cache-vllm-0`."""
KEEP_PODS_ON_DELETE = {"pulumi.com/deletionPropagationPolicy": "orphan"}
"""A changed `cache_size` or `storage_class` (volumeClaimTemplates, immutable) replaces the
StatefulSet, deleting it first (its name is fixed). Deleted with orphan propagation, its pods keep
serving and its claims stay; the new StatefulSet adopts both (same selector, same pod template, so
the same revision: no pod restarts). Existing claims keep their old size and class: docs/vllm.md,
"Changing cache_size or storage_class", gives the in-place expansion. The provider reads this from
the old state's inputs, so it applies from the `pulumi up` after the one that added it."""
IMAGE_PULL_ALLOWANCE = 600
"""Seconds for pulling the vLLM image (about 10 GB) onto a fresh node, before the model loads."""


def replica_budget(endpoint: VllmEndpoint) -> int:
    """Seconds one replica may take from scheduling to ready: each of its start's deadlines in
    turn (pull, download, load). A first start meets all of them."""
    return IMAGE_PULL_ALLOWANCE + endpoint.download_deadline + endpoint.startup_timeout


def rollout_timeouts(endpoint: VllmEndpoint) -> pulumi.CustomTimeouts:
    """Replicas start together (Parallel) but are replaced one after another, each old one
    draining first: as many as can run, so a count the autoscaler changes between runs never
    changes the deadline."""
    budget = replica_budget(endpoint)
    replaced = budget + TERMINATION_GRACE
    return pulumi.CustomTimeouts(create=f"{budget}s", update=f"{replaced * endpoint.max_replicas}s")


SCALED_REPLICAS = "spec.replicas"
"""Left to the autoscaler when it scales: pulumi-kubernetes then sends the live count, and none
once KEDA's HorizontalPodAutoscaler has written it (another field manager owns it), so `pulumi up`
neither resets it nor conflicts."""


def _cache_claim(
    endpoint: VllmEndpoint, labels: dict[str, str]
) -> k8s.core.v1.PersistentVolumeClaimArgs:
    return k8s.core.v1.PersistentVolumeClaimArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(name=CACHE_VOLUME, labels=labels),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=endpoint.storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                requests={"storage": endpoint.cache_size}
            ),
        ),
    )


def stateful_set(
    scope: EndpointScope,
    template: k8s.core.v1.PodTemplateSpecArgs,
    *,
    service_name: str,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.StatefulSet:
    endpoint = scope.endpoint
    return k8s.apps.v1.StatefulSet(
        scope.name,
        metadata=scope.metadata(WORKLOAD_NAME, annotations=KEEP_PODS_ON_DELETE),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            # Autoscaled: the floor at creation, then the autoscaler's (ignore_changes below).
            replicas=endpoint.min_replicas,
            service_name=service_name,
            # Start every replica at once; updates still replace one at a time.
            pod_management_policy="Parallel",
            # No minReadySeconds: with it, pulumi-kubernetes' await returned mid-rollout (on the
            # control plane, `up` done with 1 of 3 replicas updated): docs/vllm.md.
            # One replica at a time is what RollingUpdate does. No maxUnavailable: the API server
            # drops it unless the MaxUnavailableStatefulSet gate is on (off by default through
            # Kubernetes 1.35), and every preview then planned an update to put it back.
            update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateStatefulSetStrategyArgs(partition=0),
            ),
            selector=scope.pod_selector(),
            template=template,
            volume_claim_templates=[_cache_claim(endpoint, scope.labels)],
            # Kubernetes' default, stated: a claim outlives scale-down (scaling up again finds its
            # weights; its disk is paid meanwhile) and the StatefulSet (the orphaning replacement
            # needs it); the namespace takes it when the endpoint goes.
            persistent_volume_claim_retention_policy=(
                k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                    when_deleted="Retain", when_scaled="Retain"
                )
            ),
        ),
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                custom_timeouts=rollout_timeouts(endpoint),
                ignore_changes=[SCALED_REPLICAS] if endpoint.autoscaling else None,
            ),
        ),
    )


def disruption_budget(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.policy.v1.PodDisruptionBudget | None:
    """Node drains take one replica at a time; a single replica has nothing to keep serving. An
    autoscaled endpoint has one whenever it may run two: maxUnavailable 1 never blocks a drain,
    whatever count the autoscaler has set."""
    if scope.endpoint.max_replicas < 2:
        return None
    return k8s.policy.v1.PodDisruptionBudget(
        scope.name,
        metadata=scope.metadata(),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1,
            selector=scope.pod_selector(),
            # A replica that never becomes Ready (crash-looping) may be evicted: it serves
            # nothing, and under the default it would block every drain of its node.
            unhealthy_pod_eviction_policy="AlwaysAllow",
        ),
        opts=opts,
    )


SCALE_POLL = 15
"""Seconds between KEDA's queries of Prometheus (its default 30 is a long time for a queue)."""
SCALE_DOWN_WAIT = 600
"""Seconds the queue must stay short before a replica goes: a replica takes minutes to load its
model, so it is not given up at the first quiet minute."""


SCALE_UP_WAIT = 60
"""Seconds the load must stay high before a replica is added: a burst of a few seconds does not
start a replica that loads for minutes."""
SCALE_UP_PERIOD = 120
"""At most one replica added per this many seconds: a new replica reports nothing until its
model is loaded, so the load it will take is not visible yet; a faster pace would add several
for one surge."""


def load_query(endpoint: VllmEndpoint) -> str:
    """Requests in the endpoint's replicas, running and waiting, as vLLM reports them (its
    /metrics). Both: waiting alone is 0 until the batch is full and then jumps, which makes the
    count swing up and down; with AverageValue, KEDA divides the sum by the replica count."""
    selector = f'{{namespace="{endpoint.namespace}",model_name="{endpoint.served_model_name}"}}'
    return f"sum(vllm:num_requests_running{selector}) + sum(vllm:num_requests_waiting{selector})"


def scaled_object(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource | None:
    """KEDA's ScaledObject: a HorizontalPodAutoscaler on the StatefulSet, fed the requests per
    replica from Prometheus, between the floor and the ceiling."""
    scaling = scope.endpoint.autoscaling
    if scaling is None:
        return None
    return scope.custom_resource(
        "scaler",
        api_version="keda.sh/v1alpha1",
        kind="ScaledObject",
        metadata=scope.metadata(WORKLOAD_NAME),
        spec={
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": WORKLOAD_NAME,
            },
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": SCALE_POLL,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": SCALE_UP_WAIT,
                            "policies": [
                                {"type": "Pods", "value": 1, "periodSeconds": SCALE_UP_PERIOD}
                            ],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": SCALE_DOWN_WAIT,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": scaling.prometheus_url,
                        "query": load_query(scope.endpoint),
                        "threshold": str(scaling.target_load),
                    },
                }
            ],
        },
        opts=opts,
    )

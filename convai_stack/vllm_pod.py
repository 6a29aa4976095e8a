"""The vLLM pod: its container, probes and volumes, and how its replicas spread over nodes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import Toleration, VllmEndpoint

PORT = 8000
CACHE_VOLUME = "model-cache"
"""The name of each replica's cache claim template, and of its mount."""
CACHE_PATH = "/cache/huggingface"
"""Where each replica's cache claim is mounted, and HF_HOME: weights land on the claim whoever the
image runs as. A claim from before this path (mounted at root's default HF_HOME) has the same
layout, so its weights are found."""
COMPILE_CACHE_PATH = f"{CACHE_PATH}/vllm"
"""VLLM_CACHE_ROOT, on the claim: vLLM keeps its torch.compile and CUDA-graph artefacts there, so a
restarted replica skips the compile (a minute or more) as it skips the download."""
PROBE_PERIOD = 10
HEALTH_TIMEOUT = 10
"""Seconds /health may take: a saturated vLLM misses 5 s, and a missed liveness probe restarts a
pod that was only busy."""


DRAIN_PAUSE = 30
"""Seconds a stopping replica keeps serving before vLLM gets SIGTERM. Terminating, it has already
left the Service's ready endpoints, and the ingress controller follows within seconds; the rest
lets requests in flight finish: vLLM's SIGTERM handler cancels its HTTP server at once, dropping
any request or stream still open (vllm/entrypoints/launcher.py), so this pause is the drain. Chat
answers of Convai characters take seconds; one longer than this is cut."""
ENGINE_STOP_ALLOWANCE = 30
"""Seconds vLLM gets after SIGTERM to stop its engine processes and free the GPUs before SIGKILL."""
TERMINATION_GRACE = DRAIN_PAUSE + ENGINE_STOP_ALLOWANCE
"""The pod's terminationGracePeriodSeconds: the preStop pause counts against it."""
KEEP_ON_ITS_NODE = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}
"""Autoscalers do not evict a replica to consolidate or scale down its node: an evicted replica
reloads its model for minutes (a single one answers nothing meanwhile). Drains and rollouts are
not stopped by this: docs/vllm.md, "Single-replica endpoints". On every replica count, so that
scaling does not change the pod template."""


SERVE = ["vllm", "serve"]
"""Explicit rather than the image's entrypoint, which has changed between vLLM releases."""


def vllm_args(endpoint: VllmEndpoint) -> list[str]:
    # The model is positional: `--model` is deprecated for `vllm serve`.
    return [
        endpoint.model,
        # With HF_HUB_OFFLINE, vLLM serves the snapshot of this commit on the claim, which the
        # init container put there (vllm_weights.py); its tokenizer revision defaults to it.
        "--revision",
        endpoint.revision,
        # Several names: vLLM answers to each, and its answers and metrics carry the first.
        "--served-model-name",
        *endpoint.served_names,
        "--max-model-len",
        str(endpoint.max_model_len),
        "--tensor-parallel-size",
        str(endpoint.gpus),
        "--port",
        str(PORT),
    ]


def startup_failures(endpoint: VllmEndpoint) -> int:
    """Startup probe failures allowed: the endpoint's startup budget, in probe periods."""
    return math.ceil(endpoint.startup_timeout / PROBE_PERIOD)


def _probe(failures: int, period: int = PROBE_PERIOD) -> k8s.core.v1.ProbeArgs:
    # /health answers without the API key; /v1/models would need it.
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=PORT),
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=HEALTH_TIMEOUT,
    )


def secret_env(key: str, secret_name: pulumi.Input[str]) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=key,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=key)
        ),
    )


def key_variable(slot: str) -> str:
    """The Secret key and container variable of an endpoint key. Not VLLM_*: vLLM reads those as
    its own settings (VLLM_API_KEY would be one more key, and it warns of unknown ones)."""
    return f"ENDPOINT_KEY_{slot.upper()}"


def _api_key_args(slots: Sequence[str]) -> list[str]:
    # $(VAR) is expanded by the kubelet from the container's environment: the keys never appear
    # in the pod spec or anything the API server stores, only in the started process's arguments
    # (readable on the node by root, who can read the Secret anyway).
    return ["--api-key", *(f"$({key_variable(slot)})" for slot in slots)]


def unprivileged() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def container(
    endpoint: VllmEndpoint, secret_name: pulumi.Input[str], key_slots: Sequence[str]
) -> k8s.core.v1.ContainerArgs:
    env = [
        *(secret_env(key_variable(slot), secret_name) for slot in key_slots),
        k8s.core.v1.EnvVarArgs(name="HF_HOME", value=CACHE_PATH),
        k8s.core.v1.EnvVarArgs(name="VLLM_MAX_N_SEQUENCES", value=str(endpoint.max_n_sequences)),
        k8s.core.v1.EnvVarArgs(name="VLLM_CACHE_ROOT", value=COMPILE_CACHE_PATH),
        # No usage report to vLLM's collector: its usage_lib honours either.
        k8s.core.v1.EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
        k8s.core.v1.EnvVarArgs(name="DO_NOT_TRACK", value="1"),
        # The pinned weights are on the claim: vLLM resolves `--revision` there
        # (vllm/engine/arg_utils.py, get_model_path) and asks the model hub nothing, so it needs
        # no Hugging Face token and a restart does not depend on the hub.
        k8s.core.v1.EnvVarArgs(name="HF_HUB_OFFLINE", value="1"),
    ]
    limits = {
        "nvidia.com/gpu": str(endpoint.gpus),
        "memory": endpoint.memory,
        "cpu": endpoint.cpu,
    }
    return k8s.core.v1.ContainerArgs(
        name="vllm",
        image=endpoint.image,
        command=SERVE,
        args=[*vllm_args(endpoint), *_api_key_args(key_slots)],
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
        resources=k8s.core.v1.ResourceRequirementsArgs(limits=limits, requests=limits),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
            k8s.core.v1.VolumeMountArgs(name=CACHE_VOLUME, mount_path=CACHE_PATH),
        ],
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                sleep=k8s.core.v1.SleepActionArgs(seconds=DRAIN_PAUSE)
            )
        ),
        startup_probe=_probe(startup_failures(endpoint)),
        readiness_probe=_probe(failures=3),
        liveness_probe=_probe(failures=4, period=15),
        security_context=unprivileged(),
    )


def _spread(labels: dict[str, str]) -> k8s.core.v1.AffinityArgs:
    # Preferred, not required: a cluster with one GPU node still runs every replica. Present for
    # one replica too, so that scaling up does not change the template (and restart the pod).
    return k8s.core.v1.AffinityArgs(
        pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.core.v1.WeightedPodAffinityTermArgs(
                    weight=100,
                    pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                        topology_key="kubernetes.io/hostname",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                    ),
                )
            ]
        )
    )


def _toleration(toleration: Toleration) -> k8s.core.v1.TolerationArgs:
    return k8s.core.v1.TolerationArgs(
        key=toleration.key,
        operator=toleration.operator,
        value=toleration.value,
        effect=toleration.effect,
        toleration_seconds=toleration.toleration_seconds,
    )


def pod_template(
    endpoint: VllmEndpoint,
    labels: dict[str, str],
    annotations: dict[str, pulumi.Input[str]],
    main: k8s.core.v1.ContainerArgs,
    init: k8s.core.v1.ContainerArgs,
) -> k8s.core.v1.PodTemplateSpecArgs:
    shm = k8s.core.v1.VolumeArgs(
        name="shm",
        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
            medium="Memory", size_limit=endpoint.shm_size
        ),
    )
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(
            labels=labels, annotations={**KEEP_ON_ITS_NODE, **annotations}
        ),
        spec=k8s.core.v1.PodSpecArgs(
            init_containers=[init],
            containers=[main],
            termination_grace_period_seconds=TERMINATION_GRACE,
            # vLLM never calls the Kubernetes API: a mounted token would only be one to steal.
            automount_service_account_token=False,
            # The Service `vllm` would inject VLLM_PORT=tcp://<ip>:8000 and more VLLM_*
            # variables, which vLLM reads as its own settings and refuses: no pod would start.
            # vLLM reaches nothing through service links.
            enable_service_links=False,
            volumes=[shm],
            affinity=_spread(labels),
            tolerations=[_toleration(t) for t in endpoint.tolerations],
            node_selector=endpoint.node_selector or None,
            runtime_class_name=endpoint.runtime_class_name,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
            ),
        ),
    )

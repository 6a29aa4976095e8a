"""The vLLM pod: its container, probes and volumes, and how its replicas spread over nodes."""

from __future__ import annotations

import json
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
KERNEL_CACHES = {
    "TRITON_CACHE_DIR": f"{CACHE_PATH}/triton",
    "XDG_CACHE_HOME": f"{CACHE_PATH}/xdg",
    "TORCHINDUCTOR_CACHE_DIR": f"{CACHE_PATH}/inductor",
}
PROBE_PERIOD = 10
HEALTH_TIMEOUT = 10
"""Seconds /health may take: a saturated vLLM misses 5 s, and a missed liveness probe restarts a
pod that was only busy."""


DRAIN_PAUSE = 10
"""Seconds a stopping replica keeps serving before vLLM gets SIGTERM. Terminating, it has already
left the Service's ready endpoints; this pause covers the edge (ingress controller or Gateway)
catching up, which takes seconds, so no new request reaches a vLLM that refuses new requests."""
SHUTDOWN_TIMEOUT = 120
"""vLLM's `--shutdown-timeout` (vLLM 0.18 and later, vllm-project/vllm#34730): on SIGTERM it
refuses new requests and waits up to this many seconds for those in flight, then aborts the rest
and exits; it exits as soon as none is left. Convai characters' answers take seconds, and 120 s
is about 4,000 tokens at 35 tokens/s under load: a stream still open after it is cut (the client
sees the stream end without its final chunk). Its default, 0, aborts every request at once."""
ENGINE_STOP_ALLOWANCE = 30
"""Seconds vLLM gets after its drain to stop its engine processes and free the GPUs."""
TERMINATION_GRACE = DRAIN_PAUSE + SHUTDOWN_TIMEOUT + ENGINE_STOP_ALLOWANCE
"""The pod's terminationGracePeriodSeconds: the preStop pause counts against it, then the drain,
then the engine's stop; SIGKILL only after all three."""
KEEP_ON_ITS_NODE = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}
"""Autoscalers do not evict a replica of an endpoint that may run a single one (min_replicas 1)
to consolidate or drift its node: it would reload its model for minutes, answering nothing
meanwhile. Not where two or more always run: the PodDisruptionBudget already takes one at a time,
and the annotation would only stop Karpenter from ever replacing those GPU nodes (driver and AMI
updates). The floor, not the ceiling: switching autoscaling on from one fixed replica (floor 1)
then changes no pod template, and so restarts nothing. docs/vllm.md, "Single-replica endpoints"."""
EPHEMERAL_STORAGE = "20Gi"
"""Node disk a replica may write outside its claim (logs, temporary files): requested, so the
scheduler counts it and DiskPressure evicts others first. Kernel caches are on the claim."""
EPHEMERAL_STORAGE_LIMIT = "50Gi"


KEYS_VOLUME = "endpoint-keys"
KEYS_DIR = "/etc/vllm-keys"
KEYS_FILE_NAME = "api-keys.yaml"
KEYS_FILE = f"{KEYS_DIR}/{KEYS_FILE_NAME}"
"""vLLM's `--config` file holding `api-key: [key a, key b]`: its parser reads the file into the
arguments it parses (vllm/utils/argparse_utils.py, load_config_file), so vLLM accepts both keys
as with `--api-key a b`, while the keys stay out of the process's command line, which every user
of the node reads (`ps`) and process monitors collect. Whoever may exec into the pod reads the
file, as they could read the command line and environment: exec is read access to the keys.
VLLM_API_KEY is no substitute: it holds one key, and gap-free rotation needs two (docs/vllm.md,
"Endpoint keys in the pod")."""


def keys_file(keys: Sequence[str]) -> str:
    """The `--config` file's content: JSON, which is YAML, so no key needs quoting rules."""
    return json.dumps({"api-key": list(keys)})


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
        # Drain on SIGTERM instead of aborting every request in flight (DRAIN_PAUSE's note).
        "--shutdown-timeout",
        str(SHUTDOWN_TIMEOUT),
        # The endpoint keys, from the Secret mounted as a file: never in this process's
        # arguments, which anyone on the node (`ps`) and process-monitoring agents read.
        "--config",
        KEYS_FILE,
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


def unprivileged() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def container(endpoint: VllmEndpoint) -> k8s.core.v1.ContainerArgs:
    env = [
        k8s.core.v1.EnvVarArgs(name="HF_HOME", value=CACHE_PATH),
        k8s.core.v1.EnvVarArgs(name="VLLM_MAX_N_SEQUENCES", value=str(endpoint.max_n_sequences)),
        k8s.core.v1.EnvVarArgs(name="VLLM_CACHE_ROOT", value=COMPILE_CACHE_PATH),
        # Triton's, FlashInfer's (XDG) and Inductor's JIT caches on the claim too: kept across
        # restarts, and off the node's disk.
        *(k8s.core.v1.EnvVarArgs(name=name, value=path) for name, path in KERNEL_CACHES.items()),
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
        args=vllm_args(endpoint),
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            limits={**limits, "ephemeral-storage": EPHEMERAL_STORAGE_LIMIT},
            requests={**limits, "ephemeral-storage": EPHEMERAL_STORAGE},
        ),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
            k8s.core.v1.VolumeMountArgs(name=CACHE_VOLUME, mount_path=CACHE_PATH),
            k8s.core.v1.VolumeMountArgs(name=KEYS_VOLUME, mount_path=KEYS_DIR, read_only=True),
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


ZONE = "topology.kubernetes.io/zone"


def _zone_spread(labels: dict[str, str]) -> k8s.core.v1.TopologySpreadConstraintArgs:
    # Replicas over zones where the cluster can, never blocking one: a zone outage then takes
    # one replica, not all. Each claim stays in its first zone (docs/vllm.md, "A replica Pending
    # in its claim's zone").
    return k8s.core.v1.TopologySpreadConstraintArgs(
        max_skew=1,
        topology_key=ZONE,
        when_unsatisfiable="ScheduleAnyway",
        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
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
    *,
    main: k8s.core.v1.ContainerArgs,
    init: k8s.core.v1.ContainerArgs,
    keys_secret_name: pulumi.Input[str],
) -> k8s.core.v1.PodTemplateSpecArgs:
    shm = k8s.core.v1.VolumeArgs(
        name="shm",
        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
            medium="Memory", size_limit=endpoint.shm_size
        ),
    )
    keys = k8s.core.v1.VolumeArgs(
        name=KEYS_VOLUME,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=keys_secret_name,
            items=[k8s.core.v1.KeyToPathArgs(key=KEYS_FILE_NAME, path=KEYS_FILE_NAME)],
            default_mode=0o400,
        ),
    )
    kept = KEEP_ON_ITS_NODE if endpoint.min_replicas == 1 else {}
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={**kept, **annotations}),
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
            volumes=[shm, keys],
            affinity=_spread(labels),
            topology_spread_constraints=[_zone_spread(labels)],
            tolerations=[_toleration(t) for t in endpoint.tolerations],
            node_selector=endpoint.node_selector or None,
            runtime_class_name=endpoint.runtime_class_name,
            priority_class_name=endpoint.priority_class_name,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
            ),
        ),
    )

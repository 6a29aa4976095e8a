"""Each stack in stacks/ under mocks: what it declares, how it is wired, and what it refuses."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pydantic import StrictBool

from convai_provider import TYPE_TOKEN
from convai_provider.api.accounts import declared_accounts
from convai_provider.api.builtin_models import DEFAULT_FALLBACK_MODEL
from convai_provider.api.errors import ConvaiError
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.settings import CONFIG_KEYS as PROVIDER_KEYS
from convai_provider.resources.settings import AccountSettings
from convai_stack import stack_config as schema
from convai_stack.commands.operator_stack import load_stack
from convai_stack.plugins import ACQUISITION_OFF, VLLM_PACKAGES, plugin_of
from convai_stack.program import load_stack_config, main
from convai_stack.stack_config import (
    ENDPOINTS_KEY,
    EXTRA_BUILTINS_KEY,
    FALLBACK_KEY,
    MODELS_KEY,
    PROTECT_KEY,
    REQUIRE_DIGEST_KEY,
    STACK_KEYS,
    VLLM_IMAGE_TAG,
    StackConfig,
    StackConfigError,
    StackKeys,
    VllmEndpoint,
    parse_stack_config,
    project_values,
    read_stack_file,
    stack_file,
    unknown_key_problems,
)
from testkit.convai import CONVAI_KEY, live, stack_config
from testkit.engine import (
    GENERATED_PASSWORD,
    Declared,
    Engine,
    ProgramRun,
    RecordingMocks,
    Registration,
    run_program_fully,
    strip_secrets,
)
from testkit.service_links import (
    VLLM_VARIABLES_SET_ON_PURPOSE,
    service_variables,
    vllm_variables_seen,
)
from testkit.stacks import as_runtime_config, load_stack_file, with_test_pins

ROOT = Path(__file__).resolve().parent.parent
STACKS = ["dev", "staging", "prod"]
LOCAL_KEY = "sk-local-vllm-3b1f"
SECRETS = {
    "convai:apiKey": CONVAI_KEY,
    "convai-models:localVllmApiKey": LOCAL_KEY,
    "convai-models:hfToken": "hf-token-9a8b",
}
SECRETS_OF = {
    "dev": ("convai:apiKey", "convai-models:localVllmApiKey"),
    "staging": ("convai:apiKey", "convai-models:hfToken"),
    "prod": ("convai:apiKey", "convai-models:hfToken"),
}
"""The secrets each stack's file names (a key no stack reads is refused as a typo)."""


@pytest.fixture(autouse=True)
def plugins_downloadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a plain `pulumi` runs: the CLI fetches missing plugins (the program never looks)."""
    monkeypatch.delenv(ACQUISITION_OFF, raising=False)


def secrets(stack: str) -> dict[str, str]:
    return {k: SECRETS[k] for k in SECRETS_OF[stack]}


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"


def stack_runtime_config(stack: str, **overrides: Any) -> dict[str, str]:
    """The stack file as the runtime hands it over, its placeholders set as an operator would."""
    file = with_test_pins(read_stack_file(stack_file(stack, ROOT)))
    return {**as_runtime_config(file), **secrets(stack), **overrides}


ACCOUNTS_SECRET = "convai:accounts"
"""What `pulumi config set --secret --path convai:accounts.<alias>.apiKey` marks secret."""


def run_stack(
    stack: str,
    config: dict[str, str] | None = None,
    mocks: RecordingMocks | None = None,
    secret_keys: Iterable[str] = (*SECRETS, ACCOUNTS_SECRET),
) -> ProgramRun:
    return run_program_fully(
        main,
        stack=stack,
        config=config if config is not None else stack_runtime_config(stack),
        secret_keys=list(secret_keys),
        mocks=mocks,
    )


def unwrap(value: Any) -> Any:
    return strip_secrets(value)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value


@pytest.mark.parametrize("stack", STACKS)
def test_every_declared_model_is_registered_and_wired_to_its_endpoint(stack: str) -> None:
    declared = load_stack_file(stack_file(stack, ROOT))
    run = run_stack(stack)
    models = {r.name: r for r in run.of_type(TYPE_TOKEN)}
    assert set(models) == {m.model_group_name for m in declared.models}
    for model in declared.models:
        reg = models[model.model_group_name]
        endpoint = declared.endpoint(model.endpoint)
        assert reg.inputs["model_group_name"] == model.model_group_name
        assert reg.inputs["display_name"] == model.display_name
        assert is_secret(reg.inputs["api_key"])
        assert reg.additional_secret_outputs == ["api_key", "convai_key_fingerprint"]
        if endpoint.kind == "external":
            assert reg.inputs["base_url"] == endpoint.base_url
            assert reg.inputs["model_name"] == endpoint.model_name
            assert unwrap(reg.inputs["api_key"]) == LOCAL_KEY
        else:
            assert reg.inputs["base_url"] == f"https://{endpoint.host}/v1"
            assert reg.inputs["model_name"] == endpoint.served_model_name
            assert unwrap(reg.inputs["api_key"]) == GENERATED_PASSWORD
            password = run.named(f"{endpoint.name}-api-key")
            assert password.urn in reg.property_dependencies["api_key"]
            workload = next(r for r in run.of_type(STATEFUL_SET) if r.name == endpoint.name)
            assert workload.urn in reg.dependencies  # registered only once it is ready


@pytest.mark.parametrize(
    ("stack", "protected"), [("dev", False), ("staging", False), ("prod", True)]
)
def test_only_prod_models_are_protected(stack: str, protected: bool) -> None:
    models = run_stack(stack).of_type(TYPE_TOKEN)
    assert models and all(m.protect is protected for m in models)


@pytest.mark.parametrize("stack", STACKS)
def test_exports_name_each_model_and_keep_endpoint_keys_secret(stack: str) -> None:
    declared = load_stack_file(stack_file(stack, ROOT))
    run = run_stack(stack)
    groups = {m.model_group_name for m in declared.models}
    assert set(run.exports["models"]) == groups
    for group, exported in run.exports["models"].items():
        assert exported["model_group_name"] == group
        assert set(exported) == {"model_group_name", "model_name", "display_name", "base_url"}
    assert set(run.exports["endpointKeys"]) == groups
    assert "endpointKeys" in run.secret_exports and "models" not in run.secret_exports


def vllm_endpoints(stack: str) -> list[VllmEndpoint]:
    """The stack's vLLM endpoints as the tests run them (stack_runtime_config's pins)."""
    config = with_test_pins(read_stack_file(stack_file(stack, ROOT)))
    endpoints = parse_stack_config(project_values(config)).endpoints
    return [e for e in endpoints if isinstance(e, VllmEndpoint)]


def child(run: ProgramRun, type_suffix: str, name: str) -> Registration:
    """The resource of a vLLM endpoint whose type token ends with type_suffix."""
    return next(r for r in run.registrations if r.type.endswith(type_suffix) and r.name == name)


def workload_spec(run: ProgramRun, endpoint: VllmEndpoint) -> dict[str, Any]:
    spec: dict[str, Any] = child(run, STATEFUL_SET, endpoint.name).inputs["spec"]
    return spec


def vllm_container(run: ProgramRun, endpoint: VllmEndpoint) -> dict[str, Any]:
    (container,) = workload_spec(run, endpoint)["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def seconds(duration: str) -> int:
    """A Pulumi custom timeout ("45m", "2700s", "1h") in seconds."""
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match is not None, duration
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_vllm_workloads_follow_the_stack_config(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        workload = child(run, STATEFUL_SET, endpoint.name)
        spec = workload.inputs["spec"]
        assert spec["replicas"] == endpoint.replicas
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == endpoint.image
        assert endpoint.image.startswith(f"vllm/vllm-openai:{VLLM_IMAGE_TAG}")
        args = container["args"]
        assert args[args.index("--served-model-name") + 1] == endpoint.served_model_name
        assert args[args.index("--max-model-len") + 1] == str(endpoint.max_model_len)
        assert args[args.index("--port") + 1] == "8000"
        assert container["ports"][0]["containerPort"] == 8000
        limits = container["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == str(endpoint.gpus)
        assert limits["memory"] == endpoint.memory
        annotations = unwrap(spec["template"]["metadata"]["annotations"])
        digest = hashlib.sha256(f"{GENERATED_PASSWORD}\n{GENERATED_PASSWORD}".encode()).hexdigest()
        assert annotations["convai-models/api-key-sha256"] == digest  # a new key rolls the pods
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": 8000}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": endpoint.shm_size}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["shm"] == "/dev/shm"
        secret = run.named(f"{endpoint.name}-keys")
        data = unwrap(secret.inputs["stringData"])
        assert yaml.safe_load(data["api-keys.yaml"]) == {"api-key": [GENERATED_PASSWORD] * 2}
        ingress = child(run, "networking.k8s.io/v1:Ingress", endpoint.name)
        assert ingress.inputs["spec"]["tls"][0]["hosts"] == [endpoint.host]
        assert ingress.inputs["spec"]["rules"][0]["host"] == endpoint.host
        service = child(run, "core/v1:Service", endpoint.name)
        assert service.inputs["spec"]["ports"][0]["targetPort"] == 8000
        assert spec["serviceName"] == service.inputs["metadata"]["name"]
        component = child(run, "VllmDeployment", endpoint.name)
        assert workload.parent == component.urn


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_replica_owns_its_model_cache(stack: str) -> None:
    run = run_stack(stack)
    # One ReadWriteOnce claim mounted by replicas on two nodes never attaches (Multi-Attach).
    assert run.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    assert run.of_type(DEPLOYMENT) == []
    for endpoint in vllm_endpoints(stack):
        spec = workload_spec(run, endpoint)
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "model-cache"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"] == endpoint.cache_size
        pod = spec["template"]["spec"]
        assert all("persistentVolumeClaim" not in volume for volume in pod["volumes"])
        mounts = {m["name"] for m in vllm_container(run, endpoint)["volumeMounts"]}
        assert "model-cache" in mounts


@pytest.mark.parametrize(
    "path", sorted((ROOT / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name
)
def test_every_stack_file_passes_the_schema(path: Path) -> None:
    load_stack_file(path)


def test_prod_runs_a_multi_replica_endpoint() -> None:
    # The shape the per-replica caches exist for: keep it covered by the tests above.
    assert any(e.replicas >= 2 for e in vllm_endpoints("prod"))


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_replicas_roll_one_at_a_time_and_spread_over_nodes(stack: str) -> None:
    run = run_stack(stack)
    budgets = {r.name: r for r in run.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    for endpoint in vllm_endpoints(stack):
        spec = workload_spec(run, endpoint)
        # No maxUnavailable: an API server without its feature gate (off by default through
        # 1.35) drops it, and Pulumi plans an update at every preview to put it back
        # (tests/test_kubernetes_stacks.py's `preview --expect-no-changes` on a real API).
        assert spec["updateStrategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"partition": 0},
        }
        assert spec["podManagementPolicy"] == "Parallel"  # start together, replace one by one
        labels = spec["selector"]["matchLabels"]
        affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
        (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"] == {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": labels},
        }
        if endpoint.replicas >= 2:
            budget = budgets[endpoint.name].inputs["spec"]
            assert budget["maxUnavailable"] == 1
            assert budget["selector"] == {"matchLabels": labels}
        else:
            assert endpoint.name not in budgets  # nothing else would keep serving


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_autoscalers_do_not_evict_a_single_replica_to_save_a_node(stack: str) -> None:
    # An evicted single replica reloads its model for minutes, answering nothing meanwhile. Where
    # two or more always run, the PodDisruptionBudget takes one at a time, and the annotation
    # would only stop Karpenter from ever replacing the GPU node (driver and AMI updates).
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        annotations = workload_spec(run, endpoint)["template"]["metadata"]["annotations"]
        kept = {
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
            "karpenter.sh/do-not-disrupt": "true",
        }
        if endpoint.min_replicas == 1:
            assert kept.items() <= annotations.items()
        else:
            assert kept.keys().isdisjoint(annotations)


def test_prod_states_why_its_single_replica_endpoint_stays_single() -> None:
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    singles = [e.name for e in vllm_endpoints("prod") if e.replicas == 1]
    assert singles == ["llama-70b"]
    # The choice and its outage, next to the setting, and where the rest is said.
    assert "docs/vllm.md" in text and "outage" in text


def test_prod_states_that_its_edge_is_retired_and_where_the_move_is_planned() -> None:
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    assert all(e.gateway is None for e in vllm_endpoints("prod"))  # still ingress-nginx
    plan = "Moving prod to the Gateway API"
    assert "ingress-nginx" in text and "retired" in text and f'"{plan}"' in text
    assert f"### {plan}" in (ROOT / "docs" / "vllm.md").read_text()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_stopping_replica_leaves_the_edge_then_vllm_drains_its_requests(stack: str) -> None:
    # vLLM (0.18 and later) drains on SIGTERM only with --shutdown-timeout; its default, 0,
    # aborts every request in flight. The preStop pause lets the edge stop sending first.
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        container = vllm_container(run, endpoint)
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause == 10
        args = container["args"]
        drain = int(args[args.index("--shutdown-timeout") + 1])
        assert drain == 120
        # SIGKILL only after the pause, the drain and 30 s for the engine to free the GPUs.
        assert pod["terminationGracePeriodSeconds"] == pause + drain + 30


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_operational_defaults_of_a_gpu_platform(stack: str) -> None:
    run = run_stack(stack)
    budgets = {r.name: r for r in run.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    for endpoint in vllm_endpoints(stack):
        env = {e["name"]: e.get("value") for e in vllm_container(run, endpoint)["env"]}
        # No usage report to vLLM's collector (vLLM's usage_lib reads both).
        assert env["VLLM_NO_USAGE_STATS"] == "1"
        assert env["DO_NOT_TRACK"] == "1"
        # torch.compile, CUDA-graph, Triton, FlashInfer and Inductor caches on the claim: a
        # restart skips the compiles, and the node's disk stays clear of them.
        for cache in (
            "VLLM_CACHE_ROOT",
            "TRITON_CACHE_DIR",
            "XDG_CACHE_HOME",
            "TORCHINDUCTOR_CACHE_DIR",
        ):
            assert env[cache].startswith(env["HF_HOME"] + "/")
        resources = vllm_container(run, endpoint)["resources"]
        assert resources["requests"]["ephemeral-storage"] == "20Gi"  # counted by the scheduler
        spec = workload_spec(run, endpoint)
        # Unset: with it, pulumi-kubernetes' await returned mid-rollout (vllm_workload.py).
        assert "minReadySeconds" not in spec
        (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # never blocks a replica
        labels = child(run, "core/v1:Namespace", endpoint.name).inputs["metadata"]["labels"]
        for mode in ("enforce", "warn", "audit"):
            # A cluster upgrade does not change what is admitted.
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.35"
        # Stated, not left to the default: claims outlive scale-down and the StatefulSet.
        assert workload_spec(run, endpoint)["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }
        if endpoint.replicas >= 2:
            # A crash-looping replica (never Ready) must not block a node drain.
            budget = budgets[endpoint.name].inputs["spec"]
            assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("in_use", ["a", "b"])
def test_vllm_accepts_two_keys_from_the_secret_and_convai_gets_the_one_in_use(
    stack: str, in_use: str
) -> None:
    config = with_test_pins(read_stack_file(stack_file(stack, ROOT)))
    for endpoint in config["convai-models:endpoints"]:
        endpoint["api_key_in_use"] = in_use
    run = run_stack(stack, {**stack_runtime_config(stack), **as_runtime_config(config)})
    for endpoint in vllm_endpoints(stack):
        container = vllm_container(run, endpoint)
        args = container["args"]
        # The keys come from a file vLLM's parser reads into its arguments (`--config`): none
        # on the command line, which `ps` on the node and process monitors show.
        assert "--api-key" not in args
        assert args[args.index("--config") + 1] == "/etc/vllm-keys/api-keys.yaml"
        assert GENERATED_PASSWORD not in json.dumps(container)
        env = {e["name"]: e for e in container["env"]}
        assert "VLLM_API_KEY" not in env  # one key only: rotation needs two
        assert not any("valueFrom" in e for e in env.values())  # no key in the environment
        pod = workload_spec(run, endpoint)["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/vllm-keys")
        assert mount["readOnly"] is True
        source = volumes[mount["name"]]["secret"]
        secret = run.named(f"{endpoint.name}-keys")
        assert source["items"] == [{"key": "api-keys.yaml", "path": "api-keys.yaml"}]
        assert source["defaultMode"] == 0o400
        # The Secret's generated name (unknown under mocks): the template takes it from there.
        workload = child(run, STATEFUL_SET, endpoint.name)
        assert secret.urn in workload.property_dependencies["spec"]
        # What vLLM's load_config_file turns into `--api-key A B`: both keys, a list.
        keys_file = yaml.safe_load(unwrap(secret.inputs["stringData"])["api-keys.yaml"])
        assert keys_file == {"api-key": [GENERATED_PASSWORD, GENERATED_PASSWORD]}
        # The key in use keeps the URN the single key had: upgrading rotates nothing.
        names = {"a": f"{endpoint.name}-api-key", "b": f"{endpoint.name}-api-key-b"}
        assert {r.name for r in run.of_type(PASSWORD) if r.name.startswith(endpoint.name)} == set(
            names.values()
        )
        source = next(r for r in run.of_type(PASSWORD) if r.name == names[in_use])
        model = next(
            m
            for m in run.of_type(TYPE_TOKEN)
            if m.inputs["model_name"] == endpoint.served_model_name
        )
        assert source.urn in model.property_dependencies["api_key"]
        other = next(
            r for r in run.of_type(PASSWORD) if r.name != names[in_use] and r.name in names.values()
        )
        assert other.urn not in model.property_dependencies["api_key"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_deadlines_leave_room_for_a_first_start(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        container = vllm_container(run, endpoint)
        startup = container["startupProbe"]
        load = startup["periodSeconds"] * startup["failureThreshold"]
        assert load >= endpoint.startup_timeout
        (download,) = workload_spec(run, endpoint)["template"]["spec"]["initContainers"]
        deadline = int(
            next(e for e in download["env"] if e["name"] == "DOWNLOAD_DEADLINE")["value"]
        )
        assert deadline == endpoint.download_deadline
        assert 10 <= container["livenessProbe"]["timeoutSeconds"] <= 15  # a busy vLLM is slow
        # StatefulSets have no progressDeadlineSeconds: Pulumi's await is the only deadline.
        assert "progressDeadlineSeconds" not in workload_spec(run, endpoint)
        timeouts = child(run, STATEFUL_SET, endpoint.name).custom_timeouts
        # A first start meets each deadline in turn: the image pull, the download, the load.
        first_start = 600 + deadline + load
        assert seconds(timeouts["create"]) >= first_start
        assert seconds(timeouts["update"]) >= endpoint.replicas * first_start


def test_a_stack_file_with_startup_timeout_alone_keeps_its_download_deadline() -> None:
    # Stack files from before download_timeout: the one key is still the download's deadline.
    (endpoint,) = vllm_endpoints("staging")
    assert "download_timeout" not in endpoint.model_fields_set
    run = run_stack("staging")
    (download,) = workload_spec(run, endpoint)["template"]["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in download["env"]}
    assert int(env["DOWNLOAD_DEADLINE"]) == endpoint.startup_timeout == 1800
    # And Pulumi waits for both, plus the pull.
    timeouts = child(run, STATEFUL_SET, endpoint.name).custom_timeouts
    assert seconds(timeouts["create"]) == 600 + 1800 + 1800


def test_prod_70b_first_start_is_not_expected_to_time_out() -> None:
    (big,) = [e for e in vllm_endpoints("prod") if e.gpus == 4]
    # An hour to download 140 GB, apart from the load's half hour.
    assert (big.download_deadline, big.startup_timeout) == (3600, 1800)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_rotating_the_hf_token_restarts_no_replica(stack: str) -> None:
    before, after = (
        run_stack(stack, stack_runtime_config(stack, **{"convai-models:hfToken": token}))
        for token in ("hf-token-old-1", "hf-token-new-2")
    )
    for endpoint in vllm_endpoints(stack):
        # The same pod template whatever the token: nothing rolls.
        assert (
            workload_spec(before, endpoint)["template"]
            == workload_spec(after, endpoint)["template"]
        )
        secret = after.named(f"{endpoint.name}-hf-token")
        assert secret.inputs["metadata"]["name"] == "hf-token"  # fixed, so the template is too
        assert unwrap(secret.inputs["stringData"]) == {"HF_TOKEN": "hf-token-new-2"}
        (download,) = workload_spec(after, endpoint)["template"]["spec"]["initContainers"]
        token = next(e for e in download["env"] if e["name"] == "HF_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
        keys = unwrap(after.named(f"{endpoint.name}-keys").inputs["stringData"])
        assert "HF_TOKEN" not in keys


def test_prod_keeps_each_model_on_its_own_gpu_pool_with_the_platforms_priority() -> None:
    run = run_stack("prod")
    products = set()
    for endpoint in vllm_endpoints("prod"):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        products.add(pod["nodeSelector"]["nvidia.com/gpu.product"])
        assert pod["priorityClassName"] == "gpu-inference"
    # The 8B never takes the H100s the 70B needs four of on one node.
    assert len(products) == len(vllm_endpoints("prod"))


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_replicas_tolerate_the_usual_gpu_taint_by_default(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert pod.get("nodeSelector") == (endpoint.node_selector or None)
        assert "runtimeClassName" not in pod


def test_gpu_scheduling_follows_the_stack_config() -> None:
    def mutate(config: dict[str, Any]) -> None:
        _endpoints(config)[0].update(
            tolerations=[
                {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "toleration_seconds": 30,
                },
            ],
            node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"},
            runtime_class_name="nvidia",
        )

    run = run_stack("staging", broken(mutate))
    (endpoint,) = vllm_endpoints("staging")
    pod = workload_spec(run, endpoint)["template"]["spec"]
    assert pod["tolerations"] == [
        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["runtimeClassName"] == "nvidia"


CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_model_waits_for_a_ready_certificate_of_its_host(stack: str) -> None:
    run = run_stack(stack)
    models = {m.name: m for m in run.of_type(TYPE_TOKEN)}
    declared = load_stack_file(stack_file(stack, ROOT))
    for model in declared.models:
        endpoint = declared.endpoint(model.endpoint)
        assert isinstance(endpoint, VllmEndpoint)
        certificate = child(run, "cert-manager.io/v1:Certificate", f"{endpoint.name}-certificate")
        metadata, spec = certificate.inputs["metadata"], certificate.inputs["spec"]
        assert metadata["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
        assert spec["dnsNames"] == [endpoint.host]
        assert spec["issuerRef"] == {
            "name": endpoint.cluster_issuer,
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
        ingress = child(run, "networking.k8s.io/v1:Ingress", endpoint.name)
        (tls,) = ingress.inputs["spec"]["tls"]
        assert tls["secretName"] == spec["secretName"]
        assert certificate.urn in ingress.dependencies  # never serves a Secret not yet issued
        # ingress-shim would declare a second Certificate for the same host.
        assert "cert-manager.io/cluster-issuer" not in ingress.inputs["metadata"]["annotations"]
        assert certificate.urn in models[model.model_group_name].dependencies
        assert certificate.custom_timeouts["create"]


def test_a_brought_certificate_is_served_as_is() -> None:
    config = broken(lambda c: _endpoints(c)[0].update(cluster_issuer=None))
    run = run_stack("staging", config)
    assert run.of_type(CERTIFICATE) == []
    (endpoint,) = vllm_endpoints("staging")
    ingress = child(run, "networking.k8s.io/v1:Ingress", endpoint.name)
    assert ingress.inputs["spec"]["tls"][0]["secretName"] == f"{endpoint.name}-tls"


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_asks_a_staging_ca_for_its_certificates(stack: str) -> None:
    # Their certificates are trusted by no client: Convai would refuse the endpoint.
    for endpoint in vllm_endpoints(stack):
        assert "staging" not in (endpoint.cluster_issuer or "")


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_vllm_serves_its_model_positionally_with_bounded_requests(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        container = vllm_container(run, endpoint)
        assert container["command"] == ["vllm", "serve"]
        assert container["args"][0] == endpoint.model  # `--model` is deprecated
        assert "--model" not in container["args"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VLLM_MAX_N_SEQUENCES"] == str(endpoint.max_n_sequences)
        assert 1 <= endpoint.max_n_sequences <= 128  # vLLM's guide: 64-128 when public
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["HF_HOME"] == mounts["model-cache"]  # weights land on the replica's claim


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_pods_run_without_privileges(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert vllm_container(run, endpoint)["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }


def test_service_variables_follow_the_kubelet() -> None:
    kubernetes = {
        "metadata": {"name": "kubernetes"},
        "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
    }
    assert service_variables(kubernetes) == {
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "KUBERNETES_SERVICE_PORT_HTTPS",
        "KUBERNETES_PORT",
        "KUBERNETES_PORT_443_TCP",
        "KUBERNETES_PORT_443_TCP_PROTO",
        "KUBERNETES_PORT_443_TCP_PORT",
        "KUBERNETES_PORT_443_TCP_ADDR",
    }
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": []}}
    assert service_variables(headless) == set()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_service_link_variable_reaches_vllm(stack: str) -> None:
    """vLLM reads VLLM_* variables as its settings: the Service `vllm` would inject
    VLLM_PORT=tcp://<ip>:8000, which vLLM refuses, and no pod would start."""
    run = run_stack(stack)
    services = run.of_type("kubernetes:core/v1:Service")
    for endpoint in vllm_endpoints(stack):
        workload = child(run, STATEFUL_SET, endpoint.name)
        namespace = workload.inputs["metadata"]["namespace"]
        neighbours = [s.inputs for s in services if s.inputs["metadata"]["namespace"] == namespace]
        assert neighbours, f"no Service in {namespace}"
        pod = workload.inputs["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert vllm_variables_seen(container, pod, neighbours) == VLLM_VARIABLES_SET_ON_PURPOSE


def fence_of(run: ProgramRun, endpoint: VllmEndpoint) -> dict[str, Any]:
    policy = child(run, "networking.k8s.io/v1:NetworkPolicy", endpoint.name)
    workload = child(run, STATEFUL_SET, endpoint.name)
    assert policy.urn in workload.dependencies  # no replica runs unfenced
    spec: dict[str, Any] = policy.inputs["spec"]
    assert spec["podSelector"] == workload_spec(run, endpoint)["selector"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
    (peer,) = rule["from"]
    assert isinstance(peer, dict)
    return peer


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_only_the_ingress_controller_reaches_vllm(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        assert fence_of(run, endpoint) == {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "ingress-nginx",
                    "app.kubernetes.io/component": "controller",
                }
            },
        }


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_pods_reach_only_cluster_dns_and_public_https(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        policy = child(run, "networking.k8s.io/v1:NetworkPolicy", f"{endpoint.name}-egress")
        workload = child(run, STATEFUL_SET, endpoint.name)
        assert policy.urn in workload.dependencies  # no replica runs unfenced
        spec = policy.inputs["spec"]
        assert spec["podSelector"] == workload_spec(run, endpoint)["selector"]
        assert spec["policyTypes"] == ["Egress"]
        dns, https = spec["egress"]
        assert dns == {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
        assert https["ports"] == [{"port": 443, "protocol": "TCP"}]
        ipv4, ipv6 = https["to"]
        assert ipv4["ipBlock"]["cidr"] == "0.0.0.0/0"
        # Every link-local address (the metadata services), the cluster's and every private range
        # stay out of reach, on IPv4 and on a dual-stack cluster's IPv6.
        assert {"169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
            ipv4["ipBlock"]["except"]
        )
        assert ipv6["ipBlock"]["cidr"] == "::/0"
        assert {"fc00::/7", "fe80::/10", "fd00:ec2::254/128"} <= set(ipv6["ipBlock"]["except"])


def test_stated_heads_admit_any_gpu_count_that_divides_them() -> None:
    config = stack_runtime_config("staging")
    endpoints = json.loads(config["convai-models:endpoints"])
    endpoints[0].update(gpus=6, attention_heads=48, kv_heads=6)
    run = run_stack("staging", {**config, "convai-models:endpoints": json.dumps(endpoints)})
    (endpoint,) = vllm_endpoints("staging")
    args = vllm_container(run, endpoint)["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "6"


def test_prod_pins_the_gpu_product_of_its_70b() -> None:
    (big,) = [e for e in vllm_endpoints("prod") if e.name == "llama-70b"]
    assert big.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    run = run_stack("prod")
    pod = workload_spec(run, big)["template"]["spec"]
    assert pod["nodeSelector"] == big.node_selector


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_least_privilege_pods_and_namespaces(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False  # vLLM never calls the API server
        namespace = child(run, "core/v1:Namespace", endpoint.name)
        labels = namespace.inputs["metadata"]["labels"]
        # Enforced: baseline (the image runs as root, which restricted refuses); reported:
        # what restricted would refuse, so the gap stays in sight.
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        assert labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_egress_exceptions_are_a_stack_setting() -> None:
    config = stack_runtime_config("staging")
    endpoints = json.loads(config["convai-models:endpoints"])
    endpoints[0]["egress_denied_cidrs"] = ["169.254.169.254/32", "10.0.0.0/8"]
    run = run_stack("staging", {**config, "convai-models:endpoints": json.dumps(endpoints)})
    policy = child(run, "networking.k8s.io/v1:NetworkPolicy", "llama-8b-egress")
    # No IPv6 network listed: IPv6 stays closed, as for a list written before IPv6 was opened.
    (block,) = policy.inputs["spec"]["egress"][1]["to"]
    assert block["ipBlock"]["except"] == ["169.254.169.254/32", "10.0.0.0/8"]


def test_ipv6_egress_excepts_the_ipv6_networks_of_the_list() -> None:
    config = stack_runtime_config("staging")
    endpoints = json.loads(config["convai-models:endpoints"])
    endpoints[0]["egress_denied_cidrs"] = ["169.254.0.0/16", "fc00::/7", "2600:1f18::/56"]
    run = run_stack("staging", {**config, "convai-models:endpoints": json.dumps(endpoints)})
    policy = child(run, "networking.k8s.io/v1:NetworkPolicy", "llama-8b-egress")
    assert policy.inputs["spec"]["egress"][1]["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
        {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "2600:1f18::/56"]}},
    ]


def test_the_ingress_controller_and_the_image_digest_are_stack_settings() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4

    def mutate(config: dict[str, Any]) -> None:
        _endpoints(config)[0].update(
            ingress_namespace="traefik",
            ingress_pod_labels={"app.kubernetes.io/name": "traefik"},
            image_digest=digest,
            max_n_sequences=128,
        )

    run = run_stack("staging", broken(mutate))
    (endpoint,) = vllm_endpoints("staging")
    assert fence_of(run, endpoint) == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
    }
    container = vllm_container(run, endpoint)
    assert container["image"] == f"vllm/vllm-openai:{VLLM_IMAGE_TAG}@{digest}"
    assert {"name": "VLLM_MAX_N_SEQUENCES", "value": "128"} in container["env"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_base_url_is_the_ingress_output(stack: str) -> None:
    run = run_stack(stack)
    endpoint_of = {
        m.model_group_name: m.endpoint for m in load_stack_file(stack_file(stack, ROOT)).models
    }
    for model in run.of_type(TYPE_TOKEN):
        ingress = child(run, "networking.k8s.io/v1:Ingress", endpoint_of[model.name])
        assert model.property_dependencies["base_url"] == [ingress.urn]
        host = ingress.inputs["spec"]["rules"][0]["host"]
        assert model.inputs["base_url"] == f"https://{host}/v1"


class StaleIngressMocks(RecordingMocks):
    """An Ingress whose output still names the host it had before the update."""

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "kubernetes:networking.k8s.io/v1:Ingress":
            spec = copy.deepcopy(outputs["spec"])
            spec["rules"][0]["host"] = "old.llm.example.com"
            outputs["spec"] = spec
        return resource_id, outputs


def test_an_ingress_reporting_another_host_fails_the_up_and_tells_convai_nothing() -> None:
    """Seen once on a host change: the Ingress's output kept the old host, so the model's update
    was silently skipped and Convai kept calling a host nothing served."""
    mocks = StaleIngressMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", mocks=mocks)
    (endpoint,) = vllm_endpoints("staging")
    assert (
        f"the Ingress reports host 'old.llm.example.com' where the stack declares "
        f"'{endpoint.host}'" in str(caught.value)
    )
    assert "pulumi refresh" in str(caught.value)
    assert not [r for r in mocks.registrations if r.type == TYPE_TOKEN]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_ingress_publishes_only_the_openai_api_unbuffered(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        ingress = child(run, "networking.k8s.io/v1:Ingress", endpoint.name)
        (rule,) = ingress.inputs["spec"]["rules"]
        # vLLM's key guards /v1 only: /invocations, /pause, /tokenize... must not be reachable.
        assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/v1", "Prefix")]
        annotations = ingress.inputs["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_service_and_ingress_wait_as_long_as_the_rollout(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        workload = child(run, STATEFUL_SET, endpoint.name)
        assert {"create", "update"} <= set(workload.custom_timeouts)
        # Both await ready endpoints, which appear only once a pod has loaded its model.
        for kind in ("core/v1:Service", "networking.k8s.io/v1:Ingress"):
            awaited = child(run, kind, endpoint.name)
            assert awaited.custom_timeouts == workload.custom_timeouts, kind


DEV_EMULATOR_KEY = ("Pulumi.dev.yaml", "convai:apiKey", "dev-account")
"""The one key in plain text: the dev emulator's account name, which opens nothing else."""


@pytest.mark.parametrize(
    "path", sorted((ROOT / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name
)
def test_stack_files_hold_no_secret_in_plain_text(path: Path) -> None:
    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                return
            for key, item in value.items():
                lowered = str(key).lower()
                if (where, key, item) == DEV_EMULATOR_KEY:
                    continue
                if any(word in lowered for word in ("apikey", "api_key", "token", "password")):
                    assert key.endswith("_config"), f"{where}.{key} must be set with --secret"
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(yaml.safe_load(path.read_text())["config"], path.name)


# Invalid configuration ------------------------------------------------------------------------


def broken(mutate: Any, stack: str = "staging") -> dict[str, str]:
    config = with_test_pins(read_stack_file(stack_file(stack, ROOT)))
    mutate(config)
    return {**as_runtime_config(config), **secrets(stack)}


def _models(config: dict[str, Any]) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = config["convai-models:models"]
    return models


def _endpoints(config: dict[str, Any]) -> list[dict[str, Any]]:
    endpoints: list[dict[str, Any]] = config["convai-models:endpoints"]
    return endpoints


CASES = {
    "unknown endpoint": (
        lambda c: _models(c)[0].update(endpoint="nope"),
        "convai-models:models[0].endpoint: 'nope' is not a declared endpoint "
        "(declared: 'llama-8b'); add it to convai-models:endpoints or fix the reference",
    ),
    "duplicate model_group_name": (
        lambda c: _models(c).append({**_models(c)[0], "display_name": "Other"}),
        "convai-models:models[1].model_group_name: 'staging-llama-8b' is already used by models[0]",
    ),
    "duplicate display_name": (
        lambda c: _models(c).append({**_models(c)[0], "model_group_name": "other"}),
        "convai-models:models[1].display_name: 'Llama 3.1 8B (staging)' is already used by "
        "models[0]; each display_name must be unique within a stack",
    ),
    "bad URL": (
        lambda c: _endpoints(c).append(
            {
                "name": "ext",
                "kind": "external",
                "base_url": "api.example.com/v1",
                "model_name": "m",
                "api_key_config": "extKey",
            }
        ),
        "convai-models:endpoints[1].base_url: must be an http(s) URL with a host",
    ),
    "bad host": (
        lambda c: _endpoints(c)[0].update(host="https://llama.example.com"),
        "convai-models:endpoints[0].host: must be a DNS name such as llama.example.com, "
        "without scheme or path",
    ),
    "unknown kind": (
        lambda c: _endpoints(c)[0].update(kind="tgi"),
        "convai-models:endpoints[0]: kind must be one of 'external', 'vllm'",
    ),
    "unknown field": (
        lambda c: _models(c)[0].update(temperature=0.2),
        "convai-models:models[0].temperature: is not a known field; remove it",
    ),
    "misspelt endpoint field": (
        lambda c: _endpoints(c)[0].update(gpu=1),
        "convai-models:endpoints[0].gpu: is not a known field: did you mean gpus?",
    ),
    "misspelt toleration field, two levels down": (
        lambda c: _endpoints(c)[0].update(
            tolerations=[{"key": "nvidia.com/gpu", "oprator": "Exists", "effect": "NoSchedule"}]
        ),
        "convai-models:endpoints[0].tolerations[0].oprator: is not a known field: did you mean "
        "operator?",
    ),
    "misspelt model field": (
        lambda c: _models(c)[0].update(dispaly_name="Llama"),
        "convai-models:models[0].dispaly_name: is not a known field: did you mean display_name?",
    ),
    "zero gpus": (
        lambda c: _endpoints(c)[0].update(gpus=0),
        "convai-models:endpoints[0].gpus: must be at least 1",
    ),
    "toleration with a value and Exists": (
        lambda c: _endpoints(c)[0].update(
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "value": "present"}]
        ),
        "convai-models:endpoints[0].tolerations[0]: value must be left out when operator is Exists",
    ),
    "image digest that is a tag": (
        lambda c: _endpoints(c)[0].update(image_digest="v0.33.0"),
        "convai-models:endpoints[0].image_digest: must be an image digest such as "
        "sha256:<64 hex digits> (got 'v0.33.0')",
    ),
    "egress exception that is not a network": (
        lambda c: _endpoints(c)[0].update(egress_denied_cidrs=["10.0.0.1/8"]),
        "convai-models:endpoints[0].egress_denied_cidrs[0]: must be an IPv4 or IPv6 network "
        "such as 10.0.0.0/8 or fc00::/7, its host bits zero (got '10.0.0.1/8')",
    ),
    "egress exception in an uncommon spelling": (
        lambda c: _endpoints(c)[0].update(egress_denied_cidrs=["FC00::/7"]),
        "convai-models:endpoints[0].egress_denied_cidrs[0]: must be written 'fc00::/7': the "
        "network's canonical form, its prefix length stated",
    ),
    "gpus that few models divide by": (
        lambda c: _endpoints(c)[0].update(gpus=3),
        "convai-models:endpoints[0].gpus: 3 GPUs: tensor parallelism needs the model's attention "
        "and KV heads divisible by it; use 1, 2, 4 or 8, or state attention_heads and kv_heads "
        "(from the model's config.json: num_attention_heads, num_key_value_heads)",
    ),
    "gpus that do not divide the stated heads": (
        lambda c: _endpoints(c)[0].update(gpus=6, attention_heads=32, kv_heads=8),
        "convai-models:endpoints[0].gpus: 6 GPUs do not divide the model's 32 attention heads; "
        "use a divisor of both 32 and 8 (KV heads), such as 1, 2, 4 or 8",
    ),
    "gpus beyond one node": (
        lambda c: _endpoints(c)[0].update(gpus=16),
        "convai-models:endpoints[0].gpus: must be at most 8: a replica runs on one node; "
        "replicas spanning several nodes are out of scope",
    ),
    "unbounded max_n_sequences": (
        lambda c: _endpoints(c)[0].update(max_n_sequences=16384),
        "convai-models:endpoints[0].max_n_sequences: must be at most 128",
    ),
    "two endpoints on one host": (
        lambda c: _endpoints(c).append({**_endpoints(c)[0], "name": "llama-8b-b"}),
        "convai-models:endpoints[1].host: 'llama-8b.staging.llm.example.com' is already used by "
        "endpoints[0]; each host must be unique within a stack",
    ),
    "name too long for its namespace": (
        lambda c: _endpoints(c)[0].update(name="l" * 59),
        "convai-models:endpoints[0].name: must be at most 58 characters (got 59): the namespace "
        "vllm-<name> may not exceed Kubernetes' 63; shorten it",
    ),
    "misspelt fallbackModel": (
        lambda c: c.update({"convai-models:fallbackModel": "gpt-4o-mnii"}),
        "convai-models:fallbackModel: 'gpt-4o-mnii' is neither a built-in Convai model nor a "
        "model of this stack; did you mean 'gpt-4o-mini'? use one of gpt-4.1, gpt-4.1-mini,",
    ),
    "fallbackModel Convai does not document": (
        lambda c: c.update({"convai-models:fallbackModel": "claude-3-5-haiku"}),
        "or name a code Convai added since in convai-models:extraBuiltinModels",
    ),
    "fallbackModel whose characters would fall back to it": (
        lambda c: (
            c.update({"convai-models:fallbackModel": "staging-llama-8b"}),
            _models(c)[0].update(characters=["3f2a"]),
        ),
        "convai-models:fallbackModel: 'staging-llama-8b' has characters of its own, which would "
        "fall back to it while it goes away",
    ),
}


def assert_refused_before_any_resource(config: dict[str, str], expected: str) -> None:
    """Staging's program run on `config` fails with `expected` before declaring any resource,
    and the stack schema refuses it with the same words."""
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert expected in str(caught.value)
    assert mocks.registrations == []
    with pytest.raises(StackConfigError, match=re.escape(expected)):
        parse_stack_config(project_values(config))


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_configuration_fails_before_any_resource_with_path_and_fix(case: str) -> None:
    mutate, expected = CASES[case]
    assert_refused_before_any_resource(broken(mutate), expected)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("convai-models:model", "convai-models:models"),  # no models: every one deleted
        ("convai-models:endpoint", "convai-models:endpoints"),
        ("convai-models:protectmodels", "convai-models:protectModels"),
        ("convai:baseURL", "convai:baseUrl"),  # the key sent to the public Convai URL
        ("convai:apikey", "convai:apiKey"),
        ("convai-models:apiKey", "convai:apiKey"),  # `pulumi config set apiKey` in the wrong one
        ("convai-models:hfTokn", "convai-models:hfToken"),  # a secret the endpoints name
    ],
)
def test_a_mistyped_key_of_our_namespaces_is_refused_naming_the_nearest(
    typo: str, meant: str
) -> None:
    config = stack_runtime_config("staging")
    config[typo] = config.pop(meant, "x")
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert f"{typo}: neither a setting of this project nor a secret an endpoint names" in str(
        caught.value
    )
    assert f"did you mean {meant}?" in str(caught.value)
    assert f"remove it with `pulumi config rm --stack staging {typo}`" in str(caught.value)
    assert mocks.registrations == []


@pytest.mark.parametrize(
    ("stack", "removal"),
    [
        (StackKeys("staging"), "`pulumi config rm --stack staging convai:apikey`"),
        # dev-up copies the dev stack's file at every run: `config rm` there would come back
        (StackKeys("dev"), "an edit of stacks/Pulumi.dev.yaml"),
        # and keeps its secrets itself
        (
            StackKeys("dev", frozenset({"convai:apikey"})),
            "`scripts/dev-up config rm convai:apikey`",
        ),
    ],
)
def test_the_removal_named_fits_where_the_key_is(stack: StackKeys, removal: str) -> None:
    (problem,) = unknown_key_problems(["convai:apikey"], {}, stack, settings=STACK_KEYS)
    assert problem.endswith(f"Rename it, or remove it with {removal}")


def test_keys_of_other_namespaces_and_named_secrets_are_accepted() -> None:
    config = stack_runtime_config("staging", **{"kubernetes:namespace": "x", "aws:region": "y"})
    assert "convai-models:hfToken" in config
    assert run_stack("staging", config).of_type(TYPE_TOKEN)


def test_an_unknown_key_and_a_bad_field_are_reported_together() -> None:
    config = broken(lambda c: _models(c)[0].update(displayname="x", verify=False))
    config["convai-models:fallbackmodel"] = "gpt-4o"
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config)
    lines = str(caught.value).splitlines()
    assert lines[0] == "Invalid configuration of stack 'staging' (stacks/Pulumi.staging.yaml):"
    assert [line.split(":")[1] for line in lines[1:]] == [
        "fallbackmodel",
        "models[0].displayname",
        "models[0].verify",
    ]


@pytest.mark.parametrize(
    ("fallback", "extra"),
    [
        ("llama-3-70B", []),  # a documented built-in code
        ("staging-llama-8b", []),  # a model of the stack, without characters of its own
        ("gpt-5", ["gpt-5"]),  # a code Convai added after builtin_models.py was written
    ],
)
def test_a_fallback_model_may_be_built_in_of_the_stack_or_named_as_extra(
    fallback: str, extra: list[str]
) -> None:
    def mutate(config: dict[str, Any]) -> None:
        config["convai-models:fallbackModel"] = fallback
        config["convai-models:extraBuiltinModels"] = extra

    stack = parse_stack_config(project_values(broken(mutate)))
    assert stack.fallbackModel == fallback
    assert stack.extraBuiltinModels == extra
    assert run_stack("staging", broken(mutate)).of_type(TYPE_TOKEN)  # as the runtime hands it


def test_a_missing_endpoint_secret_names_the_command_that_sets_it() -> None:
    config = stack_runtime_config("dev")
    del config["convai-models:localVllmApiKey"]
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("dev", config)
    message = str(caught.value)
    assert (
        "convai-models:endpoints[0].api_key_config names the secret config key 'localVllmApiKey'"
        in message
    )
    assert "`scripts/dev-up config set --secret localVllmApiKey`" in message


def test_missing_plugins_of_vllm_endpoints_are_named_with_the_commands_that_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ACQUISITION_OFF, "true")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    plugins = [plugin_of(package) for package in VLLM_PACKAGES]
    assert [p.name for p in plugins] == ["kubernetes", "random"]
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", mocks=mocks)
    for plugin in plugins:
        assert f"`pulumi plugin install resource {plugin.name} {plugin.version}`" in str(
            caught.value
        )
    assert mocks.registrations == []
    assert run_stack("dev").of_type(TYPE_TOKEN)  # external endpoints need neither
    for plugin in plugins:
        (tmp_path / "plugins" / f"resource-{plugin.name}-v{plugin.version}").mkdir(parents=True)
    assert run_stack("staging").of_type(TYPE_TOKEN)


def test_an_ambient_plugin_on_path_counts_as_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ACQUISITION_OFF, "true")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    for name in ("kubernetes", "random"):
        ambient = tmp_path / f"pulumi-resource-{name}"
        ambient.write_text("#!/bin/sh\n")
        ambient.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert run_stack("staging").of_type(TYPE_TOKEN)


@pytest.mark.parametrize("blank", [None, " "])
def test_a_missing_convai_key_fails_before_any_resource(
    monkeypatch: pytest.MonkeyPatch, blank: str | None
) -> None:
    monkeypatch.delenv("CONVAI_API_KEY", raising=False)
    config = stack_runtime_config("staging")
    del config["convai:apiKey"]
    if blank is not None:
        config["convai:apiKey"] = blank
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert str(caught.value) == (
        "No Convai API key: run `pulumi config set --secret convai:apiKey` "
        "or export CONVAI_API_KEY."
    )
    assert mocks.registrations == []


def test_a_missing_account_key_fails_before_any_resource_naming_each_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every declared account's key is checked up front, not at that account's first operation
    (by then other accounts' models may have changed); the words are the provider's."""
    for variable in ("CONVAI_API_KEY_PARTNER", "CONVAI_API_KEY_TEAM_B"):
        monkeypatch.delenv(variable, raising=False)
    accounts: dict[str, dict[str, str]] = {
        "partner": {},
        "team_b": {"apiKey": " "},
        "spare": {"apiKey": "convai-spare-1"},
    }
    config = stack_runtime_config("staging", **{"convai:accounts": json.dumps(accounts)})
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert str(caught.value).splitlines() == [
        "No Convai API key for account 'partner': run `pulumi config set --secret --path "
        "convai:accounts.partner.apiKey` or export CONVAI_API_KEY_PARTNER.",
        "No Convai API key for account 'team_b': run `pulumi config set --secret --path "
        "convai:accounts.team_b.apiKey` or export CONVAI_API_KEY_TEAM_B.",
    ]
    assert mocks.registrations == []

    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", "convai-partner-from-env-1")
    del accounts["team_b"]
    config["convai:accounts"] = json.dumps(accounts)
    assert run_stack("staging", config).of_type(TYPE_TOKEN)


def test_an_account_key_the_provider_would_refuse_fails_before_any_resource() -> None:
    accounts = {"partner": {"apiKey": "convai-partner\n-key"}}
    config = stack_runtime_config("staging", **{"convai:accounts": json.dumps(accounts)})
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config)
    assert str(caught.value).startswith("convai:accounts.partner.apiKey ")
    assert "convai-partner" not in str(caught.value)


def provider_refusals(config: dict[str, str]) -> list[str]:
    """What the provider, configured with `config`, raises at each account's first operation."""
    settings = AccountSettings({k: config.get(k) for k in PROVIDER_KEYS})
    refusals = []
    for account in [None, *declared_accounts(config)]:
        with pytest.raises(ConvaiError) as caught:
            settings.of(account)
        refusals.append(str(caught.value))
    return refusals


def test_two_accounts_given_one_key_fail_at_preview_before_any_resource() -> None:
    """The provider refuses it at the first operation of `up`; the program, which resolves every
    account through the provider's own resolution, refuses it first, in the same words."""
    accounts = {"partner": {"apiKey": CONVAI_KEY}}
    config = stack_runtime_config("staging", **{"convai:accounts": json.dumps(accounts)})
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    refused = str(caught.value)
    assert refused.splitlines() == [
        "the default account (convai:apiKey (or $CONVAI_API_KEY)) and account 'partner' "
        "(convai:accounts.partner.apiKey (or $CONVAI_API_KEY_PARTNER)) are given the same Convai "
        "key: one key opens one Convai account, so the models of both would land in that one "
        "account. Give each account its own key (a rotated key goes to the alias it was "
        "regenerated for)."
    ]
    assert set(provider_refusals(config)) == {refused}
    assert CONVAI_KEY not in refused
    assert mocks.registrations == []


def test_a_timing_the_provider_refuses_fails_at_preview_with_every_other_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVAI_API_KEY_PARTNER", raising=False)
    accounts: dict[str, dict[str, str]] = {"partner": {}}
    config = stack_runtime_config(
        "staging", **{"convai:requestTimeout": "soon", "convai:accounts": json.dumps(accounts)}
    )
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    lines = str(caught.value).splitlines()
    assert lines == [
        "No Convai API key for account 'partner': run `pulumi config set --secret --path "
        "convai:accounts.partner.apiKey` or export CONVAI_API_KEY_PARTNER.",
        provider_refusals(config)[0],
    ]
    assert lines[1].startswith("convai:requestTimeout ")
    assert mocks.registrations == []


def test_a_convai_key_in_plain_text_is_refused_naming_the_secret_command() -> None:
    """The engine keeps the provider's config in state: a key set without --secret would sit
    there, and in the stack file, in clear."""
    plain = [k for k in SECRETS if k != "convai:apiKey"]
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", mocks=mocks, secret_keys=plain)
    assert str(caught.value) == (
        "convai:apiKey is set in plain text, so the stack file and the state hold the key in "
        "clear: set it again with `pulumi config set --secret convai:apiKey` (plain text "
        "is accepted only for an account on a loopback URL, such as the emulator)"
    )
    assert CONVAI_KEY not in str(caught.value)
    assert mocks.registrations == []


def test_an_account_key_in_plain_text_is_refused_unless_the_account_is_the_emulator() -> None:
    accounts = {
        "partner": {"apiKey": "convai-partner-1"},
        "local": {"apiKey": "convai-local-1", "baseUrl": "http://127.0.0.1:8787"},
    }
    config = stack_runtime_config("staging", **{"convai:accounts": json.dumps(accounts)})
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, secret_keys=SECRETS)
    assert str(caught.value).splitlines() == [
        "convai:accounts.partner.apiKey is set in plain text, so the stack file and the state "
        "hold the key in clear: set it again with `pulumi config set --secret --path "
        "convai:accounts.partner.apiKey` (plain text is accepted only for an account on a "
        "loopback URL, such as the emulator)"
    ]
    del accounts["partner"]
    config["convai:accounts"] = json.dumps(accounts)
    assert run_stack("staging", config, secret_keys=SECRETS).of_type(TYPE_TOKEN)


# The dev stack end to end ----------------------------------------------------------------------


def test_the_dev_stack_runs_end_to_end_against_the_emulator(convai: EmulatorProcess) -> None:
    config = stack_runtime_config("dev", **{"convai:baseUrl": convai.url})
    run = run_stack("dev", config)
    resources = [Declared.from_registration(r) for r in run.of_type(TYPE_TOKEN)]
    engine = Engine(stack_config(convai))
    engine.up(resources)
    model = live(convai)["dev-llama"]
    assert model["base_url"] == "http://127.0.0.1:8000/v1"
    assert model["model_name"] == "llama-3.1-8b"
    assert model["display_name"] == "Llama 3.1 8B (dev)"
    assert engine.preview(resources) == {"dev-llama": "same"}
    engine.destroy()
    assert live(convai) == {}


def test_the_project_file_runs_this_program_with_these_stacks() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "convai-models"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert project["stackConfigDir"] == "stacks"
    assert (ROOT / "__main__.py").read_text().count("main()") == 1
    # Project-level keys are declared bare (the CLI namespaces them); stack files use the prefix.
    assert set(project["config"]) == {"protectModels", "fallbackModel"}
    for stack in STACKS:
        keys = read_stack_file(stack_file(stack, ROOT))
        assert not set(keys) & set(project["config"]), "stack files use the namespaced keys"


def test_project_defaults_are_stated_once() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    defaults = {f"convai-models:{k}": v["default"] for k, v in project["config"].items()}
    assert defaults["convai-models:fallbackModel"] == DEFAULT_FALLBACK_MODEL
    for stack in STACKS:
        config = yaml.safe_load(stack_file(stack, ROOT).read_text())["config"]
        repeated = {k for k, v in config.items() if defaults.get(k) == v}
        assert repeated == set(), f"stacks/Pulumi.{stack}.yaml repeats project defaults {repeated}"


class WithNewSetting(StackConfig):
    newSetting: StrictBool = False  # noqa: N815 - the config key
    """A setting added to the schema, and nowhere else."""


def test_a_setting_added_to_the_schema_is_read_by_the_program_and_the_commands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The settings are StackConfig's fields: no list of keys or reader per key to extend."""
    monkeypatch.setattr(schema, "StackConfig", WithNewSetting)
    config = stack_runtime_config("staging", **{"convai-models:newSetting": "true"})
    read: list[StackConfig] = []
    run_program_fully(
        lambda: read.append(load_stack_config()),
        stack="staging",
        config=config,
        secret_keys=list(SECRETS),
    )
    assert isinstance(read[0], WithNewSetting) and read[0].newSetting is True

    file = with_test_pins(read_stack_file(stack_file("staging", ROOT)))
    stack_file("staging", tmp_path).parent.mkdir()
    stack_file("staging", tmp_path).write_text(
        yaml.safe_dump({"config": {**file, "convai-models:newSetting": True}})
    )
    stack, _ = load_stack(argparse.Namespace(stack="staging", root=tmp_path))
    assert isinstance(stack, WithNewSetting) and stack.newSetting is True


def test_runtime_text_is_decoded_except_for_a_setting_the_schema_takes_as_text() -> None:
    """The runtime hands objects and booleans over as JSON text; a model name that reads as JSON
    (`null`, `123`) is still a name, refused as one rather than turned into the default."""
    runtime = {
        "convai-models:fallbackModel": "null",
        "convai-models:protectModels": "true",
        "convai-models:extraBuiltinModels": '["gpt-5"]',
        "convai-models:hfToken": "123",  # a secret an endpoint names: no setting of the schema
    }
    assert project_values(runtime) == {
        "fallbackModel": "null",
        "protectModels": True,
        "extraBuiltinModels": ["gpt-5"],
    }


def test_the_keys_messages_name_are_the_settings_of_the_schema() -> None:
    named = {ENDPOINTS_KEY, MODELS_KEY, PROTECT_KEY, FALLBACK_KEY, EXTRA_BUILTINS_KEY}
    assert named | {REQUIRE_DIGEST_KEY} == set(STACK_KEYS) == set(StackConfig.model_fields)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("protectModels", "maybe", "must be a boolean (true or false)"),
        ("models", "[{not json", "must be a list"),
        ("endpoints", "{", "must be a list"),
    ],
)
def test_config_of_the_wrong_type_names_the_key_and_the_file(
    key: str, value: str, expected: str
) -> None:
    config = stack_runtime_config("staging")
    config[f"convai-models:{key}"] = value
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    heading, *problems = str(caught.value).splitlines()
    assert heading.endswith("(stacks/Pulumi.staging.yaml):")
    assert problems == [f"convai-models:{key}: {expected}"]
    assert mocks.registrations == []

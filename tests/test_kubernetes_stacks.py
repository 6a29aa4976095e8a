"""Staging and prod through the real CLI, the real Kubernetes provider and a real Kubernetes API.

The stacks' own files, with two things changed: Convai is the local emulator, and the cluster
each names (`kubernetes:context`) is a throwaway control plane on 127.0.0.1 (testkit/kube.py)
whose node and pods kwok plays. Every await runs: the StatefulSet's ready replicas, the Service's
endpoints, the Certificate's Ready condition and the Ingress's load-balancer address, the last two
set by kwok stages playing cert-manager and the ingress controller. Each model's endpoint
preflight runs with verify on, against https://HOST/v1 for the stack's real host names, which
resolve to a loopback server playing the ingress controller and vLLM from what the cluster holds
(testkit/published_endpoints.py); nothing resolves or dials those names anywhere else.

The Kubernetes plugin is built from the provider source the module proxy serves (about v4.25,
stamped 4.34.2: scripts/kube-versions); the random plugin is a stand-in (testkit/random_plugin.py).
docs/kubernetes-tests.md says why, and what kwok cannot show.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from convai_provider.emulator.process import EmulatorProcess
from testkit import random_plugin
from testkit.convai import CONVAI_KEY, live, stored_endpoint_key
from testkit.kube import ControlPlane, pin, processes_mentioning
from testkit.published_endpoints import PublishedEndpoints, publish
from testkit.pulumi_cli import ROOT, Event, PulumiProject
from testkit.service_links import VLLM_VARIABLES_SET_ON_PURPOSE, vllm_variables_seen
from testkit.stacks import with_test_pins
from testkit.tls import TestCA

STACKS = ("staging", "prod")
HF_TOKEN = "hf_test_token_5b1e07c9"
PROJECT = "convai-models"
MODEL_TYPE = "pulumi-python:dynamic/convai:PrivateModel"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
DISRUPTION_BUDGET = "kubernetes:policy/v1:PodDisruptionBudget"
REPLACED = {"create-replacement", "replace", "delete-replaced"}
"""The steps of a replacement, in the order of its kind (create first, or delete first)."""
ADDED = "qwen-7b"
ADDED_HOST = "qwen-7b.staging.llm.example.com"
VOLUMES_GONE_WITHIN = 60.0
"""Seconds the controllers get to delete the volumes of deleted claims (about one on an idle
machine): a bound, not a measurement."""


def stack_file_config(stack: str) -> dict[str, Any]:
    """The stack file, its placeholders (a model's commit, an image's digest) set as an operator
    sets them."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())[
        "config"
    ]
    return with_test_pins(config)


def vllm_endpoints(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in config[f"{PROJECT}:endpoints"] if e["kind"] == "vllm"]


PUBLIC_HOSTS = (
    *(e["host"] for s in STACKS for e in vllm_endpoints(stack_file_config(s))),
    ADDED_HOST,  # the endpoint the staging test adds
)
CONTEXTS = tuple(sorted({stack_file_config(s)["kubernetes:context"] for s in STACKS}))


def provider_fixes_4328() -> bool:
    """pulumi-kubernetes#4328 (a preview of a volumeClaimTemplates change fails under server-side
    apply) is fixed from v4.29; the provider source the module proxy serves is older."""
    release = pin("pulumi_kubernetes_provider_release")
    major, minor = (int(part) for part in release.split(".")[:2])
    return (major, minor) >= (4, 29)


# fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def cluster(kube_bin: Path, tmp_path: Path) -> Iterator[ControlPlane]:
    with ControlPlane(kube_bin, tmp_path / "cluster", contexts=CONTEXTS) as plane:
        yield plane


@pytest.fixture
def published(
    cluster: ControlPlane, tmp_path: Path
) -> Iterator[tuple[PublishedEndpoints, dict[str, str]]]:
    with publish(cluster, TestCA(tmp_path / "public-ca"), PUBLIC_HOSTS) as served:
        yield served


@dataclass
class Deployment:
    """A stack of this checkout on the throwaway cluster, and what it is checked against."""

    name: str
    project: PulumiProject
    config: dict[str, Any]
    cluster: ControlPlane
    convai: EmulatorProcess
    endpoints: PublishedEndpoints

    def configure(self, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        config = copy.deepcopy(self.config)
        if change is not None:
            change(config)
        self.project.configure(config)

    def plan(self, change: Callable[[dict[str, Any]], None]) -> Plan:
        """The preview of the stack changed by `change` (the stack is configured back after)."""
        self.configure(change)
        try:
            log = self.project.dir / "plan.jsonl"
            log.unlink(missing_ok=True)
            done = self.project.run("preview", "--event-log", str(log), check=False)
            return Plan(done.returncode, done.stdout + done.stderr, planned_steps(log))
        finally:
            self.configure()


@dataclass
class Plan:
    exit_code: int
    output: str
    steps: dict[tuple[str, str], set[str]]
    """Operations planned, by (resource type, name)."""

    def ops(self, type_: str, name: str) -> set[str]:
        return self.steps.get((type_, name), set())

    def changed(self) -> dict[tuple[str, str], set[str]]:
        return {k: ops for k, ops in self.steps.items() if ops - {"same"}}


def planned_steps(log: Path) -> dict[tuple[str, str], set[str]]:
    """Resources' steps; not providers' (the dynamic provider is configured with the whole
    stack configuration, so any config change "updates" it, which the CLI does not show)."""
    steps: dict[tuple[str, str], set[str]] = {}
    for line in log.read_text().splitlines():
        event = json.loads(line).get("resourcePreEvent")
        if event and not event["metadata"]["type"].startswith("pulumi:providers:"):
            meta = event["metadata"]
            key = (meta["type"], meta["urn"].rsplit("::", 1)[-1])
            steps.setdefault(key, set()).add(meta["op"])
    return steps


@pytest.fixture
def deploy(
    *,
    tmp_path: Path,
    cli_bin: Path,
    kube_bin: Path,
    cluster: ControlPlane,
    convai: EmulatorProcess,
    published: tuple[PublishedEndpoints, dict[str, str]],
) -> Iterator[Callable[[str], Deployment]]:
    made: list[PulumiProject] = []

    def deploy(stack: str) -> Deployment:
        endpoints, routing = published
        env = {"CONVAI_API_KEY": CONVAI_KEY, "KUBECONFIG": str(cluster.kubeconfig), **routing}
        project = PulumiProject(tmp_path / stack, cli_bin, env)
        made.append(project)
        plugin = kube_bin / "pulumi-resource-kubernetes"
        version = pin("pulumi_kubernetes_plugin")
        project.run(
            "plugin",
            "install",
            "resource",
            "kubernetes",
            version,
            "--file",
            str(plugin),
            stack_flag=False,
        )
        random_plugin.install(project)
        project.set_secret("hfToken", HF_TOKEN)
        config = {**stack_file_config(stack), "convai:baseUrl": convai.url}
        deployment = Deployment(stack, project, config, cluster, convai, endpoints)
        deployment.configure()
        return deployment

    yield deploy
    for project in made:
        left = processes_mentioning(str(project.dir))
        assert left == [], f"processes outlived `pulumi` (plugins, language host): {left}"


# what a deployed stack holds --------------------------------------------------------------------


def assert_deployed(deployment: Deployment, only: str | None = None) -> None:
    """Every endpoint runs, awaited, as declared; every model is on Convai with the URL and key
    the program derives; each preflight reached its host's endpoint with that key. `only` limits
    the checks of endpoints and their models to that endpoint (the others' claims may keep an
    older size: see assert_cache_change_keeps_pods_and_claims)."""
    outputs = deployment.project.outputs()
    registered = live(deployment.convai)
    endpoints = {e["name"]: e for e in vllm_endpoints(deployment.config)}
    models = deployment.config[f"{PROJECT}:models"]
    assert set(registered) == {m["model_group_name"] for m in models}
    for model in (m for m in models if only in (None, m["endpoint"])):
        group, endpoint = model["model_group_name"], endpoints[model["endpoint"]]
        url = f"https://{endpoint['host']}/v1"
        assert registered[group]["base_url"] == url
        assert registered[group]["model_name"] == endpoint["served_model_name"]
        assert outputs["models"][group]["base_url"] == url
        key = outputs["endpointKeys"][group]
        assert stored_endpoint_key(deployment.convai, group) == key
        assert_endpoint_runs(deployment.cluster, endpoint, key)
        # The preflight's last call, a chat completion, went to this host and was answered.
        assert ("/v1/chat/completions", 200) in [
            (r.path, r.answer) for r in deployment.endpoints.requests if r.host == endpoint["host"]
        ]


def assert_endpoint_runs(cluster: ControlPlane, endpoint: dict[str, Any], key: str) -> None:
    namespace = f"vllm-{endpoint['name']}"
    (workload,) = cluster.objects("statefulsets", namespace)
    assert workload["status"].get("readyReplicas") == endpoint["replicas"]
    claims = cluster.objects("persistentvolumeclaims", namespace)
    assert len(claims) == endpoint["replicas"]
    for claim in claims:
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["resources"]["requests"]["storage"] == endpoint["cache_size"]
    (labels,) = [
        n["metadata"]["labels"]
        for n in cluster.objects("namespaces")
        if n["metadata"]["name"] == namespace
    ]
    # Pod Security admission of the API server admitted the pods under it.
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    policies = {
        p["metadata"]["name"]: p["spec"] for p in cluster.objects("networkpolicies", namespace)
    }
    assert sorted(spec["policyTypes"] for spec in policies.values()) == [["Egress"], ["Ingress"]]
    services = cluster.objects("services", namespace)
    for pod in cluster.objects("pods", namespace):
        # No service-account token: the API server's admission mounted none.
        assert not any(v["name"].startswith("kube-api-access") for v in pod["spec"]["volumes"])
        assert pod["status"]["hostIP"] == "127.0.0.1"  # kwok's node address: loopback
        (container,) = pod["spec"]["containers"]
        # What the kubelet would add for the namespace's real Services (kwok runs no kubelet).
        seen = vllm_variables_seen(container, pod["spec"], services)
        assert seen == VLLM_VARIABLES_SET_ON_PURPOSE
        image = f"vllm/vllm-openai:{endpoint['image_tag']}"
        digest = endpoint.get("image_digest")
        assert container["image"] == (f"{image}@{digest}" if digest else image)
        # The pinned weights: downloaded by the init container, served offline by vLLM.
        (download,) = pod["spec"]["initContainers"]
        assert download["image"] == container["image"]
        assert {"name": "MODEL_REVISION", "value": endpoint["revision"]} in download["env"]
        args = container["args"]
        assert args[args.index("--revision") + 1] == endpoint["revision"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(endpoint["gpus"])
    (certificate,) = cluster.objects("certificates.cert-manager.io", namespace)
    assert certificate["spec"]["dnsNames"] == [endpoint["host"]]
    assert {"type": "Ready", "status": "True"}.items() <= certificate["status"]["conditions"][
        0
    ].items()
    (ingress,) = cluster.objects("ingresses", namespace)
    assert ingress["spec"]["rules"][0]["host"] == endpoint["host"]
    assert ingress["status"]["loadBalancer"]["ingress"] == [{"ip": "127.0.0.1"}]
    budgets = cluster.objects("poddisruptionbudgets", namespace)
    assert len(budgets) == (1 if endpoint["replicas"] >= 2 else 0)
    (keys,) = [s for s in cluster.objects("secrets", namespace) if "api-keys.yaml" in s["data"]]
    # vLLM's --config file: both keys, the one in use first or second by its slot.
    accepted = yaml.safe_load(base64.b64decode(keys["data"]["api-keys.yaml"]))["api-key"]
    slot = "ab".index(endpoint.get("api_key_in_use", "a"))
    assert accepted[slot] == key
    assert accepted[1 - slot] != key
    # The HF token apart, under a fixed name: rotating it changes no pod template.
    (token,) = [
        s for s in cluster.objects("secrets", namespace) if s["metadata"]["name"] == "hf-token"
    ]
    assert base64.b64decode(token["data"]["HF_TOKEN"]).decode() == HF_TOKEN


def assert_gone(deployment: Deployment) -> None:
    assert live(deployment.convai) == {}
    namespaces = {f"vllm-{e['name']}" for e in vllm_endpoints(deployment.config)}
    assert deployment.cluster.namespaces() & namespaces == set()
    # A claim's volume goes after the claim, as the controllers get to it: waited for, bounded.
    deadline = time.monotonic() + VOLUMES_GONE_WITHIN
    while deployment.cluster.objects("persistentvolumes") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert deployment.cluster.objects("persistentvolumes") == []


def endpoint_parts(name: str, replicas: int, hf_token: bool) -> set[tuple[str, str]]:
    """What the program declares for a vLLM endpoint, as (type, name): all of it, so a plan of
    a new or removed endpoint is checked whole."""
    parts = {
        ("convai-models:inference:VllmDeployment", name),
        ("kubernetes:core/v1:Namespace", name),
        (SECRET, f"{name}-keys"),
        (STATEFUL_SET, name),
        ("kubernetes:core/v1:Service", name),
        ("kubernetes:networking.k8s.io/v1:Ingress", name),
        ("kubernetes:cert-manager.io/v1:Certificate", f"{name}-certificate"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", name),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{name}-egress"),
        ("random:index/randomPassword:RandomPassword", f"{name}-api-key"),
        ("random:index/randomPassword:RandomPassword", f"{name}-api-key-b"),
    }
    if hf_token:
        parts.add((SECRET, f"{name}-hf-token"))
    return parts | ({(DISRUPTION_BUDGET, name)} if replicas >= 2 else set())


def endpoint_steps(config: dict[str, Any], name: str, op: str) -> dict[tuple[str, str], set[str]]:
    """`op` for every part of endpoint `name` of `config` and each model on it."""
    (endpoint,) = [e for e in config[f"{PROJECT}:endpoints"] if e["name"] == name]
    models = [m for m in config[f"{PROJECT}:models"] if m["endpoint"] == name]
    parts = endpoint_parts(name, endpoint["replicas"], "hf_token_config" in endpoint)
    return {key: {op} for key in parts | {(MODEL_TYPE, m["model_group_name"]) for m in models}}


# the changes users make -------------------------------------------------------------------------


def first_endpoint(config: dict[str, Any]) -> dict[str, Any]:
    endpoint: dict[str, Any] = config[f"{PROJECT}:endpoints"][0]
    return endpoint


def new_image(config: dict[str, Any]) -> None:
    first_endpoint(config)["image_tag"] = "v0.34.0"


def new_model(config: dict[str, Any]) -> None:
    endpoint = first_endpoint(config)
    endpoint["model"] = "meta-llama/Llama-3.2-3B-Instruct"
    endpoint["served_model_name"] = "llama-3.2-3b"


def more_replicas(config: dict[str, Any]) -> None:
    first_endpoint(config)["replicas"] += 1


def bigger_cache(config: dict[str, Any]) -> None:
    first_endpoint(config)["cache_size"] = "300Gi"


def other_key_in_use(config: dict[str, Any]) -> None:
    first_endpoint(config)["api_key_in_use"] = "b"


def added_endpoint(config: dict[str, Any]) -> None:
    endpoint = {
        **first_endpoint(config),
        "name": ADDED,
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "served_model_name": "qwen-2.5-7b",
        "host": ADDED_HOST,
    }
    config[f"{PROJECT}:endpoints"].append(endpoint)
    config[f"{PROJECT}:models"].append(
        {"model_group_name": f"staging-{ADDED}", "endpoint": ADDED, "display_name": "Qwen"}
    )


def removed_endpoint(config: dict[str, Any]) -> None:
    without_endpoint(config[f"{PROJECT}:endpoints"][-1]["name"])(config)


def without_endpoint(name: str) -> Callable[[dict[str, Any]], None]:
    """The change that removes endpoint `name` and the models on it."""

    def change(config: dict[str, Any]) -> None:
        endpoints = config[f"{PROJECT}:endpoints"]
        config[f"{PROJECT}:endpoints"] = [e for e in endpoints if e["name"] != name]
        models = config[f"{PROJECT}:models"]
        config[f"{PROJECT}:models"] = [m for m in models if m["endpoint"] != name]

    return change


def assert_plans(deployment: Deployment) -> None:
    """The real provider's plan for each change a user makes to an endpoint: every preview's exit
    code, and every resource the plan changes with its steps (nothing else changes)."""
    endpoint = first_endpoint(deployment.config)
    name = endpoint["name"]
    group = next(
        m["model_group_name"]
        for m in deployment.config[f"{PROJECT}:models"]
        if m["endpoint"] == name
    )

    # A new image or model rolls the pods in place: an update of the pod template only.
    plan = deployment.plan(new_image)
    assert (plan.exit_code, plan.changed()) == (0, {(STATEFUL_SET, name): {"update"}}), plan.output

    # A new served name is a new Convai model_name, which Convai cannot update: replaced.
    plan = deployment.plan(new_model)
    assert (plan.exit_code, plan.changed()) == (
        0,
        {(STATEFUL_SET, name): {"update"}, (MODEL_TYPE, group): REPLACED},
    ), plan.output

    # More replicas: the StatefulSet scales in place, and two or more get a disruption budget.
    plan = deployment.plan(more_replicas)
    budget = {(DISRUPTION_BUDGET, name): {"create"}} if endpoint["replicas"] == 1 else {}
    assert (plan.exit_code, plan.changed()) == (
        0,
        {(STATEFUL_SET, name): {"update"}, **budget},
    ), plan.output

    # volumeClaimTemplates cannot change in place: the StatefulSet alone is replaced (deleted
    # first, its name is fixed). Before v4.29 the provider also sends the change to the API server
    # during the preview, which refuses it (pulumi-kubernetes#4328): the preview fails, naming it;
    # a `pulumi up` of the same change replaces the StatefulSet all the same.
    plan = deployment.plan(bigger_cache)
    assert plan.changed() == {(STATEFUL_SET, name): REPLACED}, plan.output
    if provider_fixes_4328():
        assert plan.exit_code == 0, plan.output
    else:
        assert plan.exit_code == 1, plan.output  # the CLI's code for a failed preview
        assert "updates to statefulset spec for fields other than" in plan.output

    # Convai switched to the endpoint's other key, which vLLM already accepts: the model's key is
    # updated in place, and no pod restarts (docs/vllm.md, "Rotating an endpoint key").
    plan = deployment.plan(other_key_in_use)
    assert (plan.exit_code, plan.changed()) == (0, {(MODEL_TYPE, group): {"update"}}), plan.output

    # A new Hugging Face token changes only its own Secret, under a fixed name: the provider
    # replaces it under the same name, the pod template is unchanged, and no pod restarts
    # (docs/vllm.md, "Pinned weights").
    deployment.project.set_secret("hfToken", "hf_rotated_token_77d2")
    try:
        plan = deployment.plan(lambda _config: None)
    finally:
        deployment.project.set_secret("hfToken", HF_TOKEN)
    assert (plan.exit_code, plan.changed()) == (
        0,
        {(SECRET, f"{name}-hf-token"): REPLACED},
    ), plan.output

    # A new endpoint is created whole, and its model registered on it; nothing else changes.
    plan = deployment.plan(added_endpoint)
    added = copy.deepcopy(deployment.config)
    added_endpoint(added)
    assert (plan.exit_code, plan.changed()) == (
        0,
        endpoint_steps(added, ADDED, "create"),
    ), plan.output


def assert_removing_one_of_two_endpoints(deployment: Deployment) -> None:
    """With two endpoints running, removing either deletes it whole, with its model, and leaves
    the other as it is."""
    for name in [e["name"] for e in deployment.config[f"{PROJECT}:endpoints"]]:
        plan = deployment.plan(without_endpoint(name))
        assert (plan.exit_code, plan.changed()) == (
            0,
            endpoint_steps(deployment.config, name, "delete"),
        ), plan.output


def assert_cache_change_keeps_pods_and_claims(deployment: Deployment) -> None:
    """A new cache_size replaces the StatefulSet with orphan propagation: the running pods and
    their claims outlive it and the new one adopts them; nothing restarts, the claims keep their
    size (expanding them is the operator's step, docs/vllm.md)."""
    endpoint = first_endpoint(deployment.config)
    namespace = f"vllm-{endpoint['name']}"
    cluster = deployment.cluster
    (old,) = cluster.objects("statefulsets", namespace)
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.objects("pods", namespace)}
    claims = {
        c["metadata"]["name"]: (c["metadata"]["uid"], c["spec"]["resources"]["requests"]["storage"])
        for c in cluster.objects("persistentvolumeclaims", namespace)
    }

    changed = copy.deepcopy(deployment.config)
    bigger_cache(changed)
    deployment.config = changed
    deployment.configure()
    deployment.project.up()

    (new,) = cluster.objects("statefulsets", namespace)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]  # replaced
    (template,) = new["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"] == "300Gi"
    assert new["status"].get("readyReplicas") == endpoint["replicas"]
    now = cluster.objects("pods", namespace)
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in now} == pods  # none restarted
    for pod in now:
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["uid"] == new["metadata"]["uid"]  # adopted by the new StatefulSet
    assert {
        c["metadata"]["name"]: (c["metadata"]["uid"], c["spec"]["resources"]["requests"]["storage"])
        for c in cluster.objects("persistentvolumeclaims", namespace)
    } == claims


def assert_hf_token_rotation_restarts_no_pod(deployment: Deployment) -> None:
    """A new Hugging Face token replaces its fixed-name Secret on the API (deleted, then created
    under the same name): the pods keep running, and the next init container reads the new one."""
    namespace = f"vllm-{first_endpoint(deployment.config)['name']}"
    cluster = deployment.cluster
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.objects("pods", namespace)}
    for token in ("hf_rotated_token_77d2", HF_TOKEN):  # rotated, then back for what follows
        deployment.project.set_secret("hfToken", token)
        deployment.project.up()
        secrets = {s["metadata"]["name"]: s for s in cluster.objects("secrets", namespace)}
        assert base64.b64decode(secrets["hf-token"]["data"]["HF_TOKEN"]).decode() == token
        now = cluster.objects("pods", namespace)
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in now} == pods


def served_names(cluster: ControlPlane, namespace: str) -> list[list[str]]:
    """Each pod's `--served-model-name` values."""
    names = []
    for pod in cluster.objects("pods", namespace):
        (container,) = pod["spec"]["containers"]
        args = container["args"]
        start = args.index("--served-model-name") + 1
        end = next(i for i in range(start, len(args)) if args[i].startswith("--"))
        names.append(args[start:end])
    return names


def first_change_of(events: list[Event], name: str) -> int:
    return next(i for i, e in enumerate(events) if e.name == name and e.op != "same")


def assert_served_name_changes_without_a_404_window(deployment: Deployment) -> None:
    """docs/vllm.md, "Changing the model or the served name": the new name, the old one kept in
    `also_served_as` while the pods roll, then dropped."""
    endpoint = first_endpoint(deployment.config)
    namespace, old = f"vllm-{endpoint['name']}", endpoint["served_model_name"]
    group = next(
        m["model_group_name"]
        for m in deployment.config[f"{PROJECT}:models"]
        if m["endpoint"] == endpoint["name"]
    )
    new = "llama-3.2-3b"

    def step_one(config: dict[str, Any]) -> None:
        new_model(config)
        first_endpoint(config)["also_served_as"] = [old]

    changed = copy.deepcopy(deployment.config)
    step_one(changed)
    deployment.config = changed
    deployment.configure()
    events = deployment.project.up_with_events()
    # Convai's model moves to the new name only once the roll is done (the StatefulSet's await:
    # every replica updated and ready), and every new replica answers to both names: Convai's
    # requests find their name on every pod, old or new, at every moment.
    rolled = events.index(Event("resOutputsEvent", "update", endpoint["name"]))
    assert rolled < first_change_of(events, group), events
    assert served_names(deployment.cluster, namespace) == [[new, old]] * endpoint["replicas"]
    assert live(deployment.convai)[group]["model_name"] == new
    # Its preflight asked the replicas for the new name and was answered.
    assert ("/v1/chat/completions", 200) in [
        (r.path, r.answer) for r in deployment.endpoints.requests if r.host == endpoint["host"]
    ]

    # Then the old name goes: the pods roll again, Convai's model stays as it is.
    changed = copy.deepcopy(deployment.config)
    first_endpoint(changed)["also_served_as"] = []
    plan = deployment.plan(lambda config: config.update(changed))
    assert plan.changed() == {(STATEFUL_SET, endpoint["name"]): {"update"}}, plan.output
    deployment.config = changed
    deployment.configure()
    deployment.project.up()
    assert served_names(deployment.cluster, namespace) == [[new]] * endpoint["replicas"]


# the tests --------------------------------------------------------------------------------------


# About 25 CLI commands on a throwaway cluster: 6 minutes on a quiet 2-core machine, more than
# the suite's 10 under a load of 20.
@pytest.mark.timeout(1800)
def test_staging_deploys_awaited_plans_each_change_and_goes_whole(
    deploy: Callable[[str], Deployment],
) -> None:
    staging = deploy("staging")
    staging.project.up()
    assert_deployed(staging)
    staging.project.run("preview", "--expect-no-changes")
    assert_plans(staging)
    assert_hf_token_rotation_restarts_no_pod(staging)
    assert_cache_change_keeps_pods_and_claims(staging)
    assert_served_name_changes_without_a_404_window(staging)

    # Removing the endpoint deletes its model from Convai and everything it ran on. Its HF token
    # goes too: a secret no endpoint names is refused as a possible typo.
    staging.project.run("config", "rm", f"{PROJECT}:hfToken")
    plan = staging.plan(removed_endpoint)
    staging.project.set_secret("hfToken", HF_TOKEN)
    name = first_endpoint(staging.config)["name"]
    assert (plan.exit_code, plan.changed()) == (
        0,
        endpoint_steps(staging.config, name, "delete"),
    ), plan.output

    # A second endpoint, deployed as the first; then either can go without touching the other.
    two = copy.deepcopy(staging.config)
    added_endpoint(two)
    staging.config = two
    staging.configure()
    staging.project.up()
    assert_deployed(staging, only=ADDED)
    staging.project.run("preview", "--expect-no-changes")
    assert_removing_one_of_two_endpoints(staging)

    staging.project.destroy()
    assert_gone(staging)


def test_prod_deploys_awaited_refuses_to_drop_a_protected_model_and_goes_whole(
    deploy: Callable[[str], Deployment],
) -> None:
    prod = deploy("prod")
    prod.project.up()
    assert_deployed(prod)
    prod.project.run("preview", "--expect-no-changes")

    # prod protects its models: removing an endpoint and its model is refused, nothing changes.
    plan = prod.plan(removed_endpoint)
    assert plan.exit_code != 0
    assert "protect" in plan.output
    prod.project.run("preview", "--expect-no-changes")

    # Taking prod down is deliberate: lift the protection, then destroy.
    prod.project.run("state", "unprotect", "--all", "--yes")
    prod.project.destroy()
    assert_gone(prod)

"""The guardrails policy pack (policy/, docs/policy.md): through the real CLI on a library user's
program where every rule fails once, and on the stacks' resources at each stack's settings.
`scripts/dev-up preview` runs it on the dev stack (tests/test_dev_up.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convai_provider.emulator.process import EmulatorProcess
from policy import guardrails
from testkit.convai import CONVAI_KEY
from testkit.kube import pin
from testkit.pulumi_cli import ROOT, PulumiProject
from tests.test_stacks import STACKS, run_stack, unwrap
from tests.test_vllm_options import EVERY_OPTION, changed

ANALYZER = ROOT / "policy" / "analyzer"
LIBRARY = ROOT / "docs" / "examples" / "policy-library-program"
ENDPOINT_KEY = "sk-library-endpoint-0c7e"

EVERY_RULE_FAILS_ONCE = {
    ("convai-endpoint-https", "bad-http"),
    ("convai-endpoint-key", "bad-key"),
    ("convai-model-protected", "bad-unprotected"),
    ("convai-uncensored", "bad-uncensored"),
    ("convai-model-naming", "bad-name"),
    ("convai-fallback-exists", ""),
    ("convai-image-digest", "bad-vllm-tag"),
    ("convai-ingress-v1-only", "bad-ingress"),
    ("convai-ingress-v1-only", "bad-route"),  # the same rule on a Gateway API HTTPRoute
}
ALL_MANDATORY = {
    "all": "mandatory",
    "convai-model-naming": {"enforcementLevel": "mandatory", "pattern": "lib-[a-z-]+"},
}


def test_the_rules_cover_every_rule_of_the_pack() -> None:
    names = {rule.name for rule in guardrails.RESOURCE_RULES} | {guardrails.FALLBACK_RULE}
    assert names == {rule for rule, _resource in EVERY_RULE_FAILS_ONCE}


# through the real CLI ---------------------------------------------------------------------------


@pytest.fixture
def library(
    tmp_path: Path, cli_bin: Path, kube_bin: Path, convai: EmulatorProcess
) -> Iterator[PulumiProject]:
    project = PulumiProject(tmp_path / "project", cli_bin, {"CONVAI_API_KEY": CONVAI_KEY}, LIBRARY)
    project.run(
        "plugin",
        "install",
        "resource",
        "kubernetes",
        pin("pulumi_kubernetes_plugin"),
        "--file",
        str(kube_bin / "pulumi-resource-kubernetes"),
        stack_flag=False,
    )
    project.configure(
        {"convai:baseUrl": convai.url, "convai-models:renderDir": str(tmp_path / "rendered")}
    )
    yield project
    project.end_started()


def preview_with_pack(
    project: PulumiProject, config: dict[str, Any] | None
) -> tuple[int, list[dict[str, Any]], str]:
    """Exit code, policy events and whole output of a preview with the pack."""
    flags = ["--policy-pack", str(ANALYZER)]
    if config is not None:
        path = project.dir / "policy-config.json"
        path.write_text(json.dumps(config))
        flags += ["--policy-pack-config", str(path)]
    log = project.dir / "events.jsonl"
    done = project.preview(*flags, "--event-log", str(log), check=False)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    policy = [e["policyEvent"] for e in events if "policyEvent" in e]
    return done.returncode, policy, done.stdout + done.stderr


def seen(events: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(rule, resource name; empty for the stack) -> enforcement level of each violation."""
    return {(e["policyName"], resource_name(e)): e["enforcementLevel"] for e in events}


def resource_name(event: dict[str, Any]) -> str:
    urn = str(event.get("resourceUrn") or "")
    return "" if "::pulumi:pulumi:Stack::" in urn else urn.rsplit("::", 1)[-1]


def test_each_rule_fails_on_a_library_program_and_stops_the_preview(
    library: PulumiProject,
) -> None:
    code, events, output = preview_with_pack(library, ALL_MANDATORY)
    assert code != 0, output
    violations = seen(events)
    assert set(violations) == EVERY_RULE_FAILS_ONCE, output
    assert set(violations.values()) == {"mandatory"}
    assert "convai-guardrails" in output
    assert ENDPOINT_KEY not in output
    assert CONVAI_KEY not in output
    assert library.resources() == {}  # a preview: nothing was made


def test_the_packs_defaults_and_a_stacks_config_set_each_rules_level(
    library: PulumiProject,
) -> None:
    code, events, output = preview_with_pack(library, None)
    assert code != 0, output
    violations = seen(events)
    assert ("convai-model-naming", "bad-name") not in violations  # no pattern: no naming rule
    assert violations[("convai-model-protected", "bad-unprotected")] == "advisory"
    assert violations[("convai-image-digest", "bad-vllm-tag")] == "advisory"
    assert violations[("convai-endpoint-https", "bad-http")] == "mandatory"

    advisory = {"all": "advisory", "convai-uncensored": {"allowed": True}}
    code, events, output = preview_with_pack(library, advisory)
    assert code == 0, output
    violations = seen(events)
    assert set(violations.values()) == {"advisory"}
    assert ("convai-uncensored", "bad-uncensored") not in violations
    assert ("convai-endpoint-key", "bad-key") in violations


def test_a_misspelt_rule_in_the_config_stops_the_preview_naming_it(library: PulumiProject) -> None:
    """Pulumi hands a name no rule has to the pack as it is: without the pack's refusal the prod
    rule meant to be mandatory kept its default level, and the preview passed (#25's trial)."""
    misspelt = {"all": "advisory", "convai-model-protect": "mandatory"}
    code, events, output = preview_with_pack(library, misspelt)
    assert code != 0, output
    assert events == []
    assert "the policy config names no rule of this pack: 'convai-model-protect' (did you " in (
        " ".join(output.split())
    )


def test_the_program_started_as_a_policy_pack_says_to_give_the_analyzer() -> None:
    """`--policy-pack <a directory>`: this CLI's language host runs `python ''` in the project
    directory, the stacks' program, which said "No Convai API key" (#25's trial)."""
    started = subprocess.run(
        [sys.executable, ""], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert started.returncode == 1
    assert "give `--policy-pack policy/analyzer` (docs/policy.md)" in started.stderr
    assert "No Convai API key" not in started.stderr


def test_a_misnamed_rule_property_fails_the_preview_naming_it(library: PulumiProject) -> None:
    """The CLI checks only the properties a rule declares: `patern` left the naming rule at its
    default (no pattern), and the preview passed."""
    naming = {"enforcementLevel": "mandatory", "patern": "lib-[a-z-]+"}
    code, events, output = preview_with_pack(library, {"convai-model-naming": naming})
    assert code != 0, output
    said = [e["message"] for e in events if e["policyName"] == "convai-model-naming"]
    assert said, output
    assert all("names 'patern', which is no property of that rule" in m for m in said)


# the stacks -------------------------------------------------------------------------------------


def stack_settings(stack: str) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(
        (ROOT / "policy" / "stacks" / f"{stack}.json").read_text()
    )
    return settings


def stack_resources(stack: str) -> list[guardrails.Declared]:
    return [
        guardrails.Declared(r.type, r.name, unwrap(r.inputs), r.protect)
        for r in run_stack(stack).registrations
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_the_stacks_pass_every_mandatory_rule_at_their_settings(stack: str) -> None:
    found = guardrails.violations(stack_resources(stack), stack_settings(stack))
    assert [v for v in found if v.level == "mandatory"] == []


def test_a_config_naming_no_rule_of_the_pack_is_refused_with_the_nearest() -> None:
    with pytest.raises(ValueError, match="did you mean 'convai-model-protected'") as caught:
        guardrails.violations(stack_resources("prod"), {"convai-model-protect": "mandatory"})
    assert "'all' for every rule" in str(caught.value)
    assert guardrails.unknown_rules_problem({"all": "advisory", **stack_settings("prod")}) is None


def test_prod_breaks_no_rule_and_dev_is_told_its_endpoint_has_no_key() -> None:
    assert guardrails.violations(stack_resources("prod"), stack_settings("prod")) == []
    dev = guardrails.violations(stack_resources("dev"), stack_settings("dev"))
    assert {(v.rule, v.level) for v in dev} <= {("convai-endpoint-key", "advisory")}


def test_a_prod_model_left_unprotected_is_refused() -> None:
    resources = stack_resources("prod")
    unprotected = [
        guardrails.Declared(r.type, r.name, r.props, protect=False)
        if r.type == guardrails.MODEL_TYPE
        else r
        for r in resources
    ]
    found = guardrails.violations(unprotected, stack_settings("prod"))
    assert {(v.rule, v.level) for v in found if v.level == "mandatory"} == {
        ("convai-model-protected", "mandatory")
    }


def test_a_prod_image_named_by_its_tag_only_is_refused() -> None:
    """What a library program gets for a workload that bypasses the stack's requireImageDigest."""
    resources = [
        guardrails.Declared(r.type, r.name, _tag_only(r.props), r.protect)
        for r in stack_resources("prod")
    ]
    found = guardrails.violations(resources, stack_settings("prod"))
    assert {(v.rule, v.level) for v in found} == {("convai-image-digest", "mandatory")}


def _tag_only(props: Any) -> Any:
    """`props` with every `image: repo:tag@sha256:...` cut back to `repo:tag`."""
    if isinstance(props, dict):
        return {
            k: v.split("@", 1)[0] if k == "image" and isinstance(v, str) else _tag_only(v)
            for k, v in props.items()
        }
    if isinstance(props, list):
        return [_tag_only(v) for v in props]
    return props


ROUTE_TYPE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def staging_route() -> guardrails.Declared:
    """The HTTPRoute staging renders with `gateway` set."""
    (route,) = [
        guardrails.Declared(r.type, r.name, unwrap(r.inputs))
        for r in run_stack("staging", changed(EVERY_OPTION)).registrations
        if r.type == ROUTE_TYPE
    ]
    return route


def route_with(route: guardrails.Declared, **rule: Any) -> guardrails.Declared:
    props = json.loads(json.dumps(route.props))
    props["spec"]["rules"][0].update(rule)
    return guardrails.Declared(route.type, route.name, props)


def test_the_v1_rule_judges_the_gateway_route_as_the_ingress() -> None:
    route = staging_route()
    assert guardrails.violations([route]) == []
    everything = {"path": {"type": "PathPrefix", "value": "/"}}
    refused = {
        "a second path": route_with(
            route, matches=[{"path": {"type": "PathPrefix", "value": "/v1"}}, everything]
        ),
        "no matches, which is every path": route_with(route, matches=[]),
        "a match on headers alone": route_with(
            route, matches=[{"headers": [{"name": "x-a", "value": "b"}]}]
        ),
        "a regular expression": route_with(
            route, matches=[{"path": {"type": "RegularExpression", "value": "/v1.*"}}]
        ),
        "/v1 rewritten to /": route_with(
            route,
            filters=[
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ],
        ),
    }
    for case, resource in refused.items():
        (found,) = guardrails.violations([resource])
        assert (found.rule, found.level) == ("convai-ingress-v1-only", "mandatory"), case
        assert found.message.startswith("HTTPRoute it "), case
        assert found.message.endswith("publish only '/v1'."), case


# the adversary review: what the rules must not let through ----------------------------------------

TAG_ONLY_POD = {"spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6"}]}}


@pytest.mark.parametrize(
    ("token", "props"),
    [
        ("kubernetes:apps/v1:ReplicaSet", {"spec": {"template": TAG_ONLY_POD}}),
        ("kubernetes:batch/v1:Job", {"spec": {"template": TAG_ONLY_POD}}),
        (
            "kubernetes:batch/v1:CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": TAG_ONLY_POD}}}},
        ),
        ("kubernetes:apps/v1:DeploymentPatch", {"spec": {"template": TAG_ONLY_POD}}),
        ("kubernetes:apps/v1beta2:StatefulSet", {"spec": {"template": TAG_ONLY_POD}}),
        ("kubernetes:core/v1:PodPatch", TAG_ONLY_POD),
    ],
)
def test_a_workload_spelt_with_another_token_is_judged_too(token: str, props: Any) -> None:
    found = guardrails.violations([guardrails.Declared(token, "w", props)], {"all": "mandatory"})
    assert [(v.rule, v.resource) for v in found] == [("convai-image-digest", "w")]


@pytest.mark.parametrize(
    ("token", "spec"),
    [
        ("kubernetes:networking.k8s.io/v1beta1:Ingress", {"backend": {"serviceName": "vllm"}}),
        (
            "kubernetes:extensions/v1beta1:Ingress",
            {"rules": [{"http": {"paths": [{"path": "/metrics"}]}}]},
        ),
        (
            "kubernetes:networking.k8s.io/v1:IngressPatch",
            {"rules": [{"http": {"paths": [{"path": "/"}]}}]},
        ),
    ],
)
def test_an_ingress_spelt_with_another_token_is_judged_too(token: str, spec: Any) -> None:
    found = guardrails.violations([guardrails.Declared(token, "i", {"spec": spec})])
    assert [(v.rule, v.resource) for v in found] == [("convai-ingress-v1-only", "i")]


def test_a_fallback_in_another_account_than_its_character_is_refused() -> None:
    def binding(account: str | None) -> guardrails.Declared:
        props = {"char_id": "c1", "model_group_name": "beta", "account": account}
        return guardrails.Declared(
            guardrails.CHARACTER_TYPE, "ada", props | {"fallback_model_group_name": "spare"}
        )

    spare = guardrails.Declared(guardrails.MODEL_TYPE, "spare", {"model_group_name": "spare"})
    found = guardrails.violations(
        [spare, binding("partner")], {"all": "disabled", (guardrails.FALLBACK_RULE): "mandatory"}
    )
    assert len(found) == 1
    assert "a model of this stack in another account than the character's (account 'partner')" in (
        found[0].message
    )
    assert (
        guardrails.violations(
            [spare, binding(None)], {"all": "disabled", (guardrails.FALLBACK_RULE): "mandatory"}
        )
        == []
    )


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"convai-model-namng": "mandatory"}, "names no rule of this pack: 'convai-model-namng'"),
        ({"convai-uncensored": True}, "'convai-uncensored' must be a level"),
        ({"convai-uncensored": "mandatroy"}, "'mandatroy' is no enforcement level"),
        ({"all": "strict"}, "'all': 'strict' is no enforcement level"),
        ({"convai-uncensored": {"enforcementLevel": 3}}, "'convai-uncensored': '3' is no"),
        (
            {"convai-model-naming": {"patern": "prod-.*"}},
            "convai-model-naming names 'patern', which is no property of that rule",
        ),
    ],
)
def test_a_policy_config_that_says_nothing_clear_is_refused_naming_it(
    config: dict[str, Any], said: str
) -> None:
    with pytest.raises(guardrails.PolicyConfigError) as refused:
        guardrails.violations([], config)
    assert said in str(refused.value)


def test_a_policy_config_file_is_checked_in_one_line(tmp_path: Path) -> None:
    """A config file is checked before any preview, as CI lints it: `python -m policy.guardrails
    FILE` says what the pack would refuse."""
    misspelt = tmp_path / "rules.json"
    misspelt.write_text(json.dumps({"convai-model-namng": "mandatory"}))
    stacks = sorted(str(p) for p in (ROOT / "policy" / "stacks").glob("*.json"))
    check = [sys.executable, "-m", "policy.guardrails"]
    done = subprocess.run([*check, *stacks], cwd=ROOT, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    done = subprocess.run(
        [*check, str(misspelt)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{misspelt}: {guardrails.unknown_rules_problem(['convai-model-namng'])}"
    ]
    assert "(did you mean 'convai-model-naming'?)" in done.stderr

"""The Convai guardrails: each rule a function of what a resource declares, returning what is
wrong in words (empty: nothing). `__main__.py` makes them a Pulumi policy pack; the tests call
them on the stacks' resources too.

Resources are told apart by type token. A value the engine does not know yet (an Output of a
resource still to be made) is never judged here: pulumi-policy marks the rule not applicable
when a rule reads one. No message repeats a key.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_provider.api.accounts import account_name
from convai_provider.api.builtin_models import BUILTIN_MODELS, DEFAULT_FALLBACK_MODEL
from convai_provider.guards.text import server_text
from convai_provider.guards.urls import split_url, url_on_loopback
from convai_provider.resources.type_tokens import CHARACTER_TYPE_TOKEN, TYPE_TOKEN

MODEL_TYPE = TYPE_TOKEN
CHARACTER_TYPE = CHARACTER_TYPE_TOKEN
INGRESS_KINDS = frozenset({"Ingress", "HTTPRoute"})
"""The kinds that publish vLLM: an Ingress, or a Gateway API HTTPRoute."""
WORKLOAD_KINDS = frozenset(
    {
        "StatefulSet",
        "Deployment",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Pod",
        "Job",
        "CronJob",
    }
)
"""Kubernetes kinds, in any API group and version (`apps/v1beta2`, `extensions/v1beta1`) and as
server-side-apply patches (`DeploymentPatch`, `IngressPatch`): one object, however spelt."""
KUBERNETES_TOKEN = re.compile(r"kubernetes:[^:]+:(?P<kind>[A-Za-z]+?)(?:Patch)?")
CONVAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""What Convai (and the resource's check) fills in for a model declared without base_url."""
KEYLESS = "EMPTY"
"""The api_key a model declares for an endpoint that takes no key (docs/resources.md)."""
PUBLISHED_PATH = "/v1"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def endpoint_https(props: Mapping[str, Any]) -> list[str]:
    """A model's endpoint is https unless its host is loopback (the key travels to it)."""
    url = str(props.get("base_url") or CONVAI_DEFAULT_BASE_URL)
    parts = split_url(url)
    if parts is None or parts.scheme == "https":
        return []
    if parts.scheme == "http" and url_on_loopback(url):
        return []
    return [
        f"base_url {server_text(url)!r} must use https: Convai sends the endpoint key to it in "
        "clear otherwise (plain http is for loopback hosts only, such as 127.0.0.1)."
    ]


def endpoint_key(props: Mapping[str, Any]) -> list[str]:
    """No endpoint without a key: anyone who finds a keyless endpoint may use it."""
    key = props.get("api_key")
    if isinstance(key, str) and key.strip() and key.strip() != KEYLESS:
        return []
    return [
        # Not the placeholder's own word: a stack whose key is that placeholder as a secret (the
        # dev stack) has Pulumi mask the word in every line it prints, this one's too.
        f"model {_group(props)!r} declares no endpoint key (an empty api_key, or the placeholder "
        "an endpoint without a key is given): serve the endpoint with a key (vLLM --api-key) and "
        "give it as a Pulumi secret."
    ]


def model_protected(props: Mapping[str, Any], protect: bool) -> list[str]:
    """A model of this stack is protected: deregistering it breaks the characters using it."""
    if protect:
        return []
    return [
        f"model {_group(props)!r} is not protected: set protect=True on it (a stack file: "
        "convai-models:protectModels: true, and no model with protect: false)."
    ]


def uncensored_allowed(props: Mapping[str, Any], allowed: bool) -> list[str]:
    """`is_uncensored` only in a stack whose policy config allows it."""
    if props.get("is_uncensored") is not True or allowed:
        return []
    return [
        f"model {_group(props)!r} sets is_uncensored, which this stack does not allow: set it "
        'false, or allow it in the stack\'s policy config ("allowed": true).'
    ]


def fallback_exists(
    resources: Iterable[tuple[str, Mapping[str, Any]]], extra_builtins: Iterable[str] = ()
) -> list[str]:
    """Every binding's fallback is a built-in code or a model of the stack. `resources`: the
    stack's (type token, props)."""
    listed = list(resources)
    builtins = BUILTIN_MODELS | set(extra_builtins)
    models = [props for token, props in listed if token == MODEL_TYPE]
    problems = []
    for token, props in listed:
        if token != CHARACTER_TYPE:
            continue
        fallback = props.get("fallback_model_group_name") or DEFAULT_FALLBACK_MODEL
        account = props.get("account")
        # A character lives in one account and falls back to a model of that account only.
        own = {str(m.get("model_group_name")) for m in models if m.get("account") == account}
        if fallback in builtins or fallback in own:
            continue
        elsewhere = any(m.get("model_group_name") == fallback for m in models)
        why = (
            f"a model of this stack in another account than the character's "
            f"({account_name(account)}), which Convai's character cannot use"
            if elsewhere
            else "neither a built-in Convai model nor a model of this stack"
        )
        problems.append(
            f"character {server_text(props.get('char_id'))!r} falls back to "
            f"{server_text(fallback)!r}, {why}: its characters would stop answering when their "
            "model goes; name one that exists in its account (or list a new built-in code in "
            'the policy config\'s "extraBuiltinModels").'
        )
    return problems


def images_pinned(props: Mapping[str, Any]) -> list[str]:
    """Every container image of a workload is pinned by digest (`image@sha256:...`)."""
    return [
        f"container {server_text(name)!r} runs {server_text(image)!r}, which is not pinned by "
        "digest: a tag can move; set image_digest (sha256:...) on the vLLM endpoint."
        for name, image in _containers(props)
        if not DIGEST.search(image)
    ]


def kubernetes_kind(token: str) -> str | None:
    """The kind of a pulumi-kubernetes type token (`Ingress` for
    `kubernetes:extensions/v1beta1:Ingress` and `...:IngressPatch`); None for another token."""
    found = KUBERNETES_TOKEN.fullmatch(token)
    return found["kind"] if found else None


def edge_v1_only(props: Mapping[str, Any]) -> list[str]:
    """An Ingress or a Gateway API HTTPRoute publishes the OpenAI-compatible API (`/v1`) and
    nothing else: vLLM serves /metrics, /pause, /invocations and more that are not for the
    internet, and its key guards /v1 alone."""
    spec = props.get("spec") or {}
    if props.get("kind") == "HTTPRoute":
        kind, problems = "HTTPRoute", _route_problems(spec)
    else:
        kind, problems = "Ingress", _ingress_problems(spec)
    if not problems:
        return []
    return [f"{kind} {'; '.join(problems)}: publish only {PUBLISHED_PATH!r}."]


def _ingress_problems(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    for default in ("defaultBackend", "backend"):  # `backend`: the v1beta1 Ingress's
        if spec.get(default):
            problems.append(f"it has a {default}, which publishes every path")
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            shown = path.get("path") or "/"
            if shown != PUBLISHED_PATH:
                problems.append(f"it publishes path {server_text(shown)!r}")
    return problems


ROUTE_DEFAULT_MATCH = {"path": {"type": "PathPrefix", "value": "/"}}
"""What the Gateway API matches for a rule without `matches`, and for a match without `path`."""


def _route_problems(spec: Mapping[str, Any]) -> list[str]:
    problems = []
    for rule in spec.get("rules") or []:
        for match in (rule or {}).get("matches") or [ROUTE_DEFAULT_MATCH]:
            path = (match or {}).get("path") or ROUTE_DEFAULT_MATCH["path"]
            kind, value = path.get("type") or "PathPrefix", path.get("value") or "/"
            if kind == "RegularExpression":
                problems.append(f"it matches the regular expression {server_text(value)!r}")
            elif value != PUBLISHED_PATH:
                problems.append(f"it publishes path {server_text(value)!r}")
        for step in (rule or {}).get("filters") or []:
            if ((step or {}).get("urlRewrite") or {}).get("path"):
                problems.append("it rewrites the path, which reaches vLLM's other routes")
    return problems


def model_named(props: Mapping[str, Any], pattern: str | None) -> list[str]:
    """Model group names follow the stack's naming rule, a regex matched in full."""
    if not pattern:
        return []
    try:
        rule = re.compile(pattern)
    except re.error as exc:
        return [f'the policy config\'s "pattern" {pattern!r} is no regex ({exc}): fix it.']
    name = str(props.get("model_group_name"))
    if rule.fullmatch(name):
        return []
    return [f"model group name {server_text(name)!r} does not match this stack's rule {pattern!r}."]


# the rules as the pack declares them -------------------------------------------------------------

MANDATORY = "mandatory"
ADVISORY = "advisory"
DISABLED = "disabled"
MODELS = frozenset({MODEL_TYPE})


@dataclass(frozen=True)
class Rule:
    """A rule on one resource at a time: `check(props, protect, config)`."""

    name: str
    description: str
    default: str
    types: frozenset[str]
    check: Callable[[Mapping[str, Any], bool, Mapping[str, Any]], list[str]]
    config: Mapping[str, Any] = field(default_factory=dict)
    """The JSON schema of the rule's config properties (besides enforcementLevel)."""
    kinds: frozenset[str] = frozenset()
    """Kubernetes kinds judged whatever their token spells (`kubernetes_kind`)."""

    def applies_to(self, token: str) -> bool:
        return token in self.types or kubernetes_kind(token) in self.kinds


RESOURCE_RULES = (
    Rule(
        "convai-endpoint-https",
        "A model's endpoint is https unless its host is loopback.",
        MANDATORY,
        MODELS,
        lambda props, _protect, _config: endpoint_https(props),
    ),
    Rule(
        "convai-endpoint-key",
        "No endpoint without a key (an empty api_key, or the no-key placeholder).",
        MANDATORY,
        MODELS,
        lambda props, _protect, _config: endpoint_key(props),
    ),
    Rule(
        "convai-model-protected",
        "Every Convai model is protected from deletion (prod).",
        ADVISORY,
        MODELS,
        lambda props, protect, _config: model_protected(props, protect),
    ),
    Rule(
        "convai-uncensored",
        "is_uncensored only where the stack allows it.",
        MANDATORY,
        MODELS,
        lambda props, _protect, config: uncensored_allowed(props, config.get("allowed") is True),
        {"allowed": {"type": "boolean", "default": False}},
    ),
    Rule(
        "convai-image-digest",
        "Workload images (vLLM) are pinned by digest (prod).",
        ADVISORY,
        frozenset(),
        lambda props, _protect, _config: images_pinned(props),
        kinds=WORKLOAD_KINDS,
    ),
    Rule(
        # Named when it judged Ingresses alone: stacks' policy config files name it.
        "convai-ingress-v1-only",
        f"An Ingress or a Gateway API HTTPRoute publishes {PUBLISHED_PATH} and nothing else.",
        MANDATORY,
        frozenset(),
        lambda props, _protect, _config: edge_v1_only(props),
        kinds=INGRESS_KINDS,
    ),
    Rule(
        "convai-model-naming",
        "Model group names match the stack's naming rule (a regex, matched in full).",
        MANDATORY,
        MODELS,
        lambda props, _protect, config: model_named(props, config.get("pattern")),
        {"pattern": {"type": "string", "default": ""}},
    ),
)

FALLBACK_RULE = "convai-fallback-exists"
FALLBACK_DESCRIPTION = "Every character's fallback is a built-in code or a model of the stack."
FALLBACK_CONFIG = {"extraBuiltinModels": {"type": "array", "items": {"type": "string"}}}
FALLBACK_DEFAULT = MANDATORY


EVERY_RULE = "all"
"""The key of a policy config file that sets every rule's level (Pulumi's format)."""
RULE_NAMES = frozenset({rule.name for rule in RESOURCE_RULES} | {FALLBACK_RULE})


def unknown_rules_problem(names: Iterable[str]) -> str | None:
    """Why a policy config file naming `names` is refused, or None. Pulumi passes a name no rule
    has to the pack as it is, so a misspelt rule would keep its default level without a word
    (a prod rule meant to be mandatory would stay advisory)."""
    unknown = sorted(set(names) - RULE_NAMES - {EVERY_RULE})
    if not unknown:
        return None
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(RULE_NAMES), n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (
        f"the policy config names no rule of this pack: {', '.join(named)}; the rules are "
        f"{', '.join(sorted(RULE_NAMES))} (and {EVERY_RULE!r} for every rule): fix the name "
        "in the file given to --policy-pack-config."
    )


@dataclass(frozen=True)
class Declared:
    """A resource as the rules see it."""

    type: str
    name: str
    props: Mapping[str, Any]
    protect: bool = False


@dataclass(frozen=True)
class Violation:
    rule: str
    level: str
    resource: str
    """The resource's name; empty for the stack rule."""
    message: str


def violations(
    resources: Iterable[Declared], config: Mapping[str, Any] | None = None
) -> list[Violation]:
    """What the pack reports for `resources` under a policy config file's content (`config`),
    each rule at its configured level; disabled rules report nothing. For tests and tools that
    judge resources without the CLI. A config naming a rule the pack does not have is a
    ValueError, as the pack refuses it."""
    settings = config or {}
    problem = unknown_rules_problem(settings)
    if problem is not None:
        raise PolicyConfigError(problem)
    listed = list(resources)
    found = []
    for rule in RESOURCE_RULES:
        level, properties = _configured(settings, rule.name, rule.default, rule.config)
        if level == DISABLED:
            continue
        for resource in listed:
            if rule.applies_to(resource.type):
                found += [
                    Violation(rule.name, level, resource.name, message)
                    for message in rule.check(resource.props, resource.protect, properties)
                ]
    level, properties = _configured(settings, FALLBACK_RULE, FALLBACK_DEFAULT, FALLBACK_CONFIG)
    if level != DISABLED:
        pairs = [(r.type, r.props) for r in listed]
        found += [
            Violation(FALLBACK_RULE, level, "", message)
            for message in fallback_exists(pairs, properties.get("extraBuiltinModels") or [])
        ]
    return found


LEVELS = (MANDATORY, ADVISORY, DISABLED)
ALL = EVERY_RULE


class PolicyConfigError(ValueError):
    """A policy config file's content that says nothing clear: a rule that is not in the pack
    (a typo would leave the rule at its default), a level that is none, a value of no shape."""


def misnamed_properties(
    name: str, schema: Mapping[str, Any], given: Mapping[str, Any]
) -> list[str]:
    """What is wrong with a rule's config properties that the rule does not have: a typo such as
    `patern` would leave the rule at its default, and the CLI checks only the properties a rule
    declares (pulumi's validatePolicyPackConfig), so the pack says it."""
    unknown = sorted(set(given) - set(schema) - {"enforcementLevel"})
    if not unknown:
        return []
    known = ", ".join(schema) or "none"
    return [
        f"the policy config of {name} names {', '.join(map(repr, unknown))}, which is no "
        f"property of that rule (its properties: {known}): fix the name, or the rule keeps its "
        "default."
    ]


def _configured(
    config: Mapping[str, Any], name: str, default: str, schema: Mapping[str, Any]
) -> tuple[str, Mapping[str, Any]]:
    """A rule's level and properties in a policy config file's content (pulumi's format: a
    level, or an object with enforcementLevel and properties; "all" sets every level)."""
    fallback = _level(config.get(ALL, default), ALL)
    value = config.get(name, fallback)
    if isinstance(value, str):
        return _level(value, name), {}
    if not isinstance(value, Mapping):
        raise PolicyConfigError(
            f"policy config {name!r} must be a level ({', '.join(LEVELS)}) or an object with "
            "enforcementLevel and the rule's properties"
        )
    properties = {k: v for k, v in value.items() if k != "enforcementLevel"}
    for problem in misnamed_properties(name, schema, properties):
        raise PolicyConfigError(problem)
    return _level(value.get("enforcementLevel", fallback), name), properties


def _level(value: object, name: str) -> str:
    if value in LEVELS:
        return str(value)
    raise PolicyConfigError(
        f"policy config {name!r}: {server_text(value)!r} is no enforcement level; use one of "
        f"{', '.join(LEVELS)}"
    )


def _group(props: Mapping[str, Any]) -> str:
    return server_text(props.get("model_group_name"))


def _containers(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, image) of every container and init container a workload or pod declares."""
    spec = props.get("spec") or {}
    job = (spec.get("jobTemplate") or {}).get("spec") or spec  # a CronJob's
    pod = ((job.get("template") or {}).get("spec")) or job
    found = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(kind) or []:
            found.append((str(container.get("name")), str(container.get("image"))))
    return found


def check_config_file(path: str) -> str | None:
    """What is wrong with the policy config file at `path`, in one line; None when it is clear
    (`python -m policy.guardrails FILE`)."""
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError) as exc:
        return f"{path}: cannot be read as JSON: {exc}"
    if not isinstance(config, Mapping):
        return f"{path}: a policy config file is a JSON object of rule names"
    try:
        violations([], config)
    except PolicyConfigError as exc:
        return f"{path}: {exc}"
    return None


if __name__ == "__main__":
    problems = [p for p in map(check_config_file, sys.argv[1:]) if p is not None]
    for problem in problems:
        print(problem, file=sys.stderr)
    sys.exit(2 if problems else 0)

"""What the operator commands compute: audits of a stack against Convai, adoption entries, health.

Printing and exit codes live in the CLI; this module only answers questions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from .keys import key_problem, remember
from .matching import differences
from .preflight import PreflightReport, check_endpoint
from .stack_config import ExternalEndpoint, ModelDeclaration, StackConfig, VllmEndpoint
from .wire import PrivateModel

ENDPOINT_KEYS = "endpointKeys"
"""The stack output holding each model's endpoint key (secret), by model_group_name."""

KEY_NOT_COMPARABLE = "api_key cannot be compared: Convai never returns endpoint keys"


@dataclass(frozen=True)
class Expected:
    """What Convai should hold for one declared model."""

    model_group_name: str
    model_name: str
    base_url: str
    display_name: str | None
    is_uncensored: bool


def expected_models(stack: StackConfig) -> dict[str, Expected]:
    expected = {}
    for model in stack.models:
        base_url, model_name = stack.endpoint(model.endpoint).served_as
        expected[model.model_group_name] = Expected(
            model.model_group_name, model_name, base_url, model.display_name, model.is_uncensored
        )
    return expected


@dataclass(frozen=True)
class FieldDrift:
    model_group_name: str
    field: str
    declared: Any
    in_convai: Any


@dataclass
class Audit:
    stack: str
    unmanaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    drift: list[FieldDrift] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    note: str = KEY_NOT_COMPARABLE

    @property
    def clean(self) -> bool:
        return not (self.unmanaged or self.missing or self.drift)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def audit(stack_name: str, stack: StackConfig, live: list[PrivateModel]) -> Audit:
    expected = expected_models(stack)
    held = {m.model_group_name: m for m in live}
    result = Audit(stack_name)
    result.unmanaged = sorted(set(held) - set(expected))
    result.missing = sorted(set(expected) - set(held))
    for group in sorted(set(expected) & set(held)):
        differences = _differences(expected[group], held[group])
        result.drift.extend(differences)
        if not differences:
            result.in_sync.append(group)
    return result


def _differences(expected: Expected, live: PrivateModel) -> list[FieldDrift]:
    return [
        FieldDrift(expected.model_group_name, d.field, d.declared, d.held)
        for d in differences(live.model_dump(), asdict(expected))
    ]


# adopt ------------------------------------------------------------------------------------------


def config_key_for(group: str) -> str:
    """A secret config key name for an adopted model's endpoint key: my-turbo -> myTurboApiKey."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", group) if w]
    head, *tail = words or ["adopted"]
    return head.lower() + "".join(w.capitalize() for w in tail) + "ApiKey"


def _endpoint_serving(stack: StackConfig, model: PrivateModel) -> str | None:
    for endpoint in stack.endpoints:
        if endpoint.served_as == (model.base_url, model.model_name):
            return endpoint.name
    return None


def adoption_entries(stack: StackConfig, live: list[PrivateModel]) -> dict[str, Any]:
    """Stack config that brings every unmanaged model under the stack, unchanged."""
    declared = {m.model_group_name for m in stack.models}
    taken = {e.name for e in stack.endpoints}
    verify = _agreed_verify_endpoint(stack)
    endpoints: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    new_endpoints: dict[tuple[str, str], str] = {}
    for model in sorted(live, key=lambda m: m.model_group_name):
        if model.model_group_name in declared:
            continue
        served_as = (model.base_url, model.model_name)
        endpoint = _endpoint_serving(stack, model) or new_endpoints.get(served_as)
        if endpoint is None:
            endpoint = _free_name(
                re.sub(r"[^a-z0-9-]+", "-", model.model_group_name.lower()), taken
            )
            taken.add(endpoint)
            new_endpoints[served_as] = endpoint
            endpoints.append(
                {
                    "name": endpoint,
                    "kind": "external",
                    "base_url": model.base_url,
                    "model_name": model.model_name,
                    "api_key_config": config_key_for(model.model_group_name),
                }
            )
        entry: dict[str, Any] = {"model_group_name": model.model_group_name, "endpoint": endpoint}
        if model.display_name is not None:
            entry["display_name"] = model.display_name
        entry["is_uncensored"] = model.is_uncensored
        if verify is not None:
            entry["verify_endpoint"] = verify
        entry["adopt_existing"] = True
        models.append(entry)
    return {"endpoints": endpoints, "models": models}


def _agreed_verify_endpoint(stack: StackConfig) -> bool | None:
    """The stack's verify_endpoint if all its models agree (a dev stack whose laptop vLLM may be
    down says false), else None: adopted entries then keep the default, the preflight."""
    values = {m.verify_endpoint for m in stack.models}
    return values.pop() if len(values) == 1 else None


def _free_name(base: str, taken: set[str]) -> str:
    base = base.strip("-")[:55] or "adopted"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def adoption_yaml(entries: Mapping[str, Any], stack_name: str) -> str:
    """The entries as lines to append under the stack file's lists, then what to run."""
    out = []
    for key in ("endpoints", "models"):
        if entries[key]:
            out.append(f"  convai-models:{key}:  # append to the existing list")
            body = yaml.safe_dump(entries[key], sort_keys=False, default_flow_style=False)
            out.extend(f"    {line}" for line in body.splitlines())
    if any("verify_endpoint" not in m for m in entries["models"]):
        out.append(
            "# verify_endpoint is left at its default (true): `pulumi up` first runs the "
            "endpoint preflight on each adopted model's endpoint and stops if it is down; add "
            "verify_endpoint: false to an entry to skip it"
        )
    for endpoint in entries["endpoints"]:
        out.append(
            f"# then: pulumi config set --stack {stack_name} --secret "
            f"{endpoint['api_key_config']} <the endpoint's key>"
        )
    return "\n".join(out)


# health -----------------------------------------------------------------------------------------


class MissingEndpointKeyError(Exception):
    pass


class InvalidEndpointKeyError(ValueError):
    """An endpoint key that cannot go in a header; the message names where it came from."""


def stack_outputs_problem(outputs: Any) -> str | None:
    """What is wrong with `pulumi stack output --json` as health reads it, or None."""
    if not isinstance(outputs, dict):
        return "must be a JSON object"
    keys = outputs.get(ENDPOINT_KEYS, {})
    if not isinstance(keys, dict) or not all(isinstance(k, str) for k in keys.values()):
        return f"{ENDPOINT_KEYS} must map each model_group_name to its key (a string)"
    for group, key in keys.items():
        problem = key_problem(key)
        if problem is not None:
            return f"{ENDPOINT_KEYS}.{group} {problem}"
    remember(*keys.values())
    return None


def env_name_for(config_key: str) -> str:
    """localVllmApiKey -> LOCAL_VLLM_API_KEY: where health looks for an external endpoint's key."""
    name = config_key.rpartition(":")[2]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").replace(".", "_").upper()


def endpoint_key(
    model: ModelDeclaration,
    endpoint: ExternalEndpoint | VllmEndpoint,
    outputs: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    env = os.environ if environ is None else environ
    keys = (outputs or {}).get(ENDPOINT_KEYS) or {}
    if model.model_group_name in keys:
        return str(keys[model.model_group_name])
    if isinstance(endpoint, ExternalEndpoint):
        variable = env_name_for(endpoint.api_key_config)
        if variable in env:
            problem = key_problem(env[variable])
            if problem is not None:
                raise InvalidEndpointKeyError(f"{variable} {problem}: export it without it")
            remember(env[variable])
            return env[variable]
        raise MissingEndpointKeyError(
            f"no key for {model.model_group_name}: pipe in `pulumi stack output --json "
            f"--show-secrets` with --outputs -, or export {variable}"
        )
    raise MissingEndpointKeyError(
        f"no key for {model.model_group_name}: its vLLM key lives in Pulumi state; pipe in "
        "`pulumi stack output --json --show-secrets` with --outputs -"
    )


@dataclass(frozen=True)
class Health:
    model_group_name: str
    base_url: str
    model_name: str
    ok: bool
    detail: str


def check_health(
    stack: StackConfig,
    outputs: Mapping[str, Any] | None,
    *,
    wait: float,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Health]:
    results = []
    for index, model in enumerate(stack.models):
        endpoint = stack.endpoint(model.endpoint)
        base_url, model_name = endpoint.served_as
        if progress is not None:
            progress(index + 1, len(stack.models), model.model_group_name)
        try:
            key = endpoint_key(model, endpoint, outputs)
        except MissingEndpointKeyError as exc:
            results.append(Health(model.model_group_name, base_url, model_name, False, str(exc)))
            continue
        report: PreflightReport = check_endpoint(base_url, model_name, key, wait=wait)
        results.append(
            Health(model.model_group_name, base_url, model_name, report.ok, report.summary())
        )
    return results

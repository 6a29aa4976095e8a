"""`health`: the endpoint preflight run on every model a stack declares."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convai_provider.guards.keys import UnfitKeyError, fit_key
from convai_provider.preflight.checks import PreflightReport, check_endpoint
from convai_stack.config_keys import ENDPOINT_KEYS_EXPORT
from convai_stack.stack_config import ExternalEndpoint, ModelDeclaration, StackConfig, VllmEndpoint


class MissingEndpointKeyError(Exception):
    pass


class InvalidEndpointKeyError(ValueError):
    """An endpoint key that cannot go in a header; the message names where it came from."""


def stack_outputs_problem(outputs: Any) -> str | None:
    """What is wrong with `pulumi stack output --json` as health reads it, or None."""
    if not isinstance(outputs, dict):
        return "must be a JSON object"
    keys = outputs.get(ENDPOINT_KEYS_EXPORT, {})
    if not isinstance(keys, dict) or not all(isinstance(k, str) for k in keys.values()):
        return f"{ENDPOINT_KEYS_EXPORT} must map each model_group_name to its key (a string)"
    try:
        for group, key in keys.items():
            fit_key(key, f"{ENDPOINT_KEYS_EXPORT}.{group}")
    except UnfitKeyError as exc:
        return str(exc)
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
    keys = (outputs or {}).get(ENDPOINT_KEYS_EXPORT) or {}
    if model.model_group_name in keys:
        return str(keys[model.model_group_name])
    if isinstance(endpoint, ExternalEndpoint):
        variable = env_name_for(endpoint.api_key_config)
        if variable in env:
            try:
                return fit_key(env[variable], variable, "export it without it")
            except UnfitKeyError as exc:
                raise InvalidEndpointKeyError(str(exc)) from None
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
    account: str | None = None,
) -> list[Health]:
    """Every model's endpoint; with `account`, that account's models only."""
    models = [m for m in stack.models if account is None or m.account == account]
    results = []
    for index, model in enumerate(models):
        endpoint = stack.endpoint(model.endpoint)
        base_url, model_name = endpoint.served_as
        if progress is not None:
            progress(index + 1, len(models), model.model_group_name)
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

"""`adopt`: stack entries that bring models Convai holds under a stack, unchanged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from convai_provider.api.wire import PrivateModel
from convai_stack.config_keys import set_secret_command
from convai_stack.stack_config import StackConfig


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


def adoption_entries(
    stack: StackConfig, live: list[PrivateModel], account: str | None = None
) -> dict[str, Any]:
    """Stack config that brings every unmanaged model of `account` (`live`: what it holds; None:
    the default account) under the stack, unchanged."""
    declared = {m.model_group_name for m in stack.models if m.account == account}
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
        if account is not None:
            entry["account"] = account
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


def secret_command(stack_name: str, key: str) -> str:
    return f"{set_secret_command(stack_name, key)}  # prompts for the endpoint's key"


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
        out.append(f"# then: {secret_command(stack_name, endpoint['api_key_config'])}")
    return "\n".join(out)

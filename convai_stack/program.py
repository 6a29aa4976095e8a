"""The wiring: each stack's endpoints, and the Convai models declared on top of them."""

from __future__ import annotations

import os
from typing import Any

import pulumi
import pulumi.runtime.config
import pulumi.runtime.settings

from convai_provider import ConvaiCharacterModel, ConvaiPrivateModel
from convai_provider.api.access import API_KEY_CONFIG, ConvaiAccess
from convai_provider.api.accounts import ACCOUNTS_CONFIG, key_config
from convai_provider.guards.urls import api_root_hint, url_on_loopback
from convai_provider.resources.settings import CONFIG_KEYS, AccountSettings, pulumi_config_set
from convai_stack.stack_config import (
    ENDPOINT_KEYS_EXPORT,
    MODELS_EXPORT,
    MODELS_KEY,
    PROJECT,
    ExternalEndpoint,
    ModelDeclaration,
    StackConfig,
    StackConfigError,
    StackKeys,
    VllmEndpoint,
    parse_stack_config,
    project_values,
    stack_file,
)

from .endpoints import EndpointOutputs, build_endpoint
from .plugins import missing_plugins_problem


def load_stack_config() -> StackConfig:
    """The stack's settings, read from the runtime's config as the commands read the stack file
    (`project_values`, the schema's own reader)."""
    stack = pulumi.get_stack()
    config = runtime_config()
    secrets = frozenset(k for k in config if _is_secret(k))
    return parse_stack_config(
        project_values(config),
        f"configuration of stack '{stack}' ({stack_file(stack)})",
        keys=config,
        where=StackKeys(stack, secrets),
    )


def _is_secret(key: str) -> bool:
    """Whether the engine marked the key secret (in the runtime, or where the runtime has not
    taken its secret keys in yet)."""
    runtime = pulumi.runtime.config
    return runtime.is_config_secret(key) or key in runtime.get_config_secret_keys_env()


def runtime_config() -> dict[str, Any]:
    """Every key the stack sets, namespaced, with its value as the runtime hands it to programs
    (objects and booleans as JSON text). `pulumi.Config` reads one key at a time and has no
    listing; the runtime holds them all (set from the engine's PULUMI_CONFIG)."""
    runtime = pulumi.runtime.config
    keys = sorted(set(runtime.CONFIG.get()) | set(runtime.get_config_env()))
    return {key: runtime.get_config(key) for key in keys}


def convai_settings() -> dict[str, Any]:
    """The stack's settings of the provider (every account's key and URL, the timings), as the
    provider is configured with them."""
    config = runtime_config()
    return {name: config.get(name) for name in CONFIG_KEYS}


def require_convai_keys() -> None:
    """Fail before any resource exists, rather than at the first operation of `up`: what the
    provider's own resolution refuses (a missing or unfit key, a URL, one key given to two
    accounts, a timing), for the default account and every account of convai:accounts, and a
    key in plain text; every problem on a line of its own, in the provider's words."""
    accounts = AccountSettings(convai_settings(), os.environ)
    problems = accounts.problems() + plain_key_problems(accounts.accesses())
    if problems:
        raise StackConfigError("\n".join(problems))


def plain_key_problems(resolved: dict[str | None, ConvaiAccess]) -> list[str]:
    """A Convai key set without --secret sits in clear in the stack file and in state (the
    engine keeps the provider's config there): refused, except for an account on a loopback
    URL, the emulator, whose keys open nothing. `--path` secrets make all of convai:accounts
    secret, which is as finely as the program can see it."""
    problems = []
    for alias, access in resolved.items():
        setting = API_KEY_CONFIG if alias is None else key_config(alias)
        if access.key_source != setting or url_on_loopback(access.base_url):
            continue
        if not _is_secret(API_KEY_CONFIG if alias is None else ACCOUNTS_CONFIG):
            problems.append(_plain_key(setting))
    return problems


def _plain_key(setting: str) -> str:
    return (
        f"{setting} is set in plain text, so the stack file and the state hold the key in clear: "
        f"set it again with {pulumi_config_set(setting)} (plain text is accepted only for an "
        "account on a loopback URL, such as the emulator)"
    )


def refuse_placeholders(stack: StackConfig) -> None:
    """The committed files name no model commit or image digest of their own: until the operator
    sets them, nothing is deployed (the schema accepts them, so the operator commands still read
    the file)."""
    problems = stack.placeholder_problems()
    if problems:
        raise StackConfigError(
            f"Stack '{pulumi.get_stack()}' is not ready to deploy:\n" + "\n".join(problems)
        )


def require_plugins(stack: StackConfig) -> None:
    """Fail before any resource exists, rather than in the middle of the program's traceback."""
    if any(isinstance(e, VllmEndpoint) for e in stack.endpoints):
        missing = missing_plugins_problem(os.environ)
        if missing is not None:
            raise StackConfigError(missing)


def warn_unchecked_api_roots(stack: StackConfig) -> None:
    """With the preflight off nothing calls an endpoint before Convai does: a base_url that is
    not the API root would only show as characters that stop answering."""
    for index, model in enumerate(stack.models):
        endpoint = stack.endpoint(model.endpoint)
        if model.verify_endpoint or not isinstance(endpoint, ExternalEndpoint):
            continue
        hint = api_root_hint(endpoint.base_url)
        if hint is not None:
            pulumi.log.warn(
                f"{PROJECT}:{MODELS_KEY}[{index}] ({model.model_group_name}): the base_url of "
                f"endpoint '{endpoint.name}', {endpoint.base_url}, is probably not the API root: "
                f"{hint}. verify_endpoint is false, so nothing checks it before Convai calls it."
            )


def declare_model(
    stack: StackConfig, model: ModelDeclaration, endpoint: EndpointOutputs
) -> ConvaiPrivateModel:
    return ConvaiPrivateModel(
        model.model_group_name,
        model_name=endpoint.model_name,
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        **model.resource_inputs(),
        opts=pulumi.ResourceOptions(protect=stack.protected(model), depends_on=endpoint.ready),
    )


def bind_characters(
    stack: StackConfig, model: ModelDeclaration, resource: ConvaiPrivateModel
) -> list[ConvaiCharacterModel]:
    """Bindings take the model's output, so Pulumi moves characters off a model before it goes."""
    return [
        ConvaiCharacterModel(
            f"character-{char_id}",
            char_id=char_id,
            model_group_name=resource.model_group_name,
            fallback_model_group_name=stack.fallbackModel,
            account=model.account,  # a binding's account is its model's
        )
        for char_id in model.characters
    ]


def model_export(model: ConvaiPrivateModel) -> dict[str, Any]:
    return {
        "model_group_name": model.model_group_name,
        "model_name": model.model_name,
        "display_name": model.display_name,
        "base_url": model.base_url,
    }


NOT_UNDER_PULUMI = (
    "convai-models: this is the stacks' Pulumi program, run by `pulumi preview` and `pulumi up`, "
    "and it was started on its own. `--policy-pack` given a directory (the checkout, or policy/) "
    "does that with this repository's Pulumi CLI, whose language host runs the project's program "
    "in place of the pack: give `--policy-pack policy/analyzer` (docs/policy.md)."
)


def main() -> None:
    if pulumi.runtime.settings.get_monitor() is None:
        raise SystemExit(NOT_UNDER_PULUMI)
    try:
        stack = load_stack_config()
        require_convai_keys()
        require_plugins(stack)
        refuse_placeholders(stack)
        warn_unchecked_api_roots(stack)
        endpoints = {e.name: build_endpoint(e, i) for i, e in enumerate(stack.endpoints)}
    except StackConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    models = {
        m.model_group_name: declare_model(stack, m, endpoints[m.endpoint]) for m in stack.models
    }
    for declaration in stack.models:
        bind_characters(stack, declaration, models[declaration.model_group_name])
    pulumi.export(MODELS_EXPORT, {group: model_export(m) for group, m in models.items()})
    keys = pulumi.Output.secret({group: m.api_key for group, m in models.items()})
    pulumi.export(ENDPOINT_KEYS_EXPORT, keys)

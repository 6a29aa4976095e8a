"""Inference endpoints as the program sees them: where Convai calls, which model, with which key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from convai_stack.config_keys import set_secret_command
from convai_stack.stack_config import ExternalEndpoint, StackConfigError, VllmEndpoint

from .vllm import VllmDeployment


@dataclass(frozen=True)
class EndpointOutputs:
    base_url: pulumi.Input[str]
    model_name: pulumi.Input[str]
    api_key: pulumi.Output[str]
    ready: list[pulumi.Resource] = field(default_factory=list)
    """Resources that must be ready before Convai is told about the endpoint."""


def secret_config(key: str, path: str) -> pulumi.Output[str]:
    """A secret from stack config (`ns:key` or a project key), or a clear error naming the fix."""
    namespace, _, name = key.rpartition(":")
    value = pulumi.Config(namespace or None).get_secret(name)
    if value is None:
        raise StackConfigError(
            f"convai-models:{path} names the secret config key '{key}', which is not set: run "
            f"`{set_secret_command(pulumi.get_stack(), key)}`"
        )
    return value


def build_endpoint(endpoint: ExternalEndpoint | VllmEndpoint, index: int) -> EndpointOutputs:
    if isinstance(endpoint, ExternalEndpoint):
        key = secret_config(endpoint.api_key_config, f"endpoints[{index}].api_key_config")
        base_url, model_name = endpoint.served_as
        return EndpointOutputs(base_url, model_name, key)
    hf_token = None
    if endpoint.hf_token_config:
        hf_token = secret_config(endpoint.hf_token_config, f"endpoints[{index}].hf_token_config")
    deployment = VllmDeployment(endpoint.name, endpoint, hf_token=hf_token)
    return EndpointOutputs(
        deployment.base_url, deployment.model_name, deployment.api_key, deployment.ready
    )

"""The options every Convai resource gives Pulumi besides the caller's."""

from __future__ import annotations

import pulumi

from convai_provider.resources.type_tokens import earlier_tokens


def resource_options(
    opts: pulumi.ResourceOptions | None, secret_outputs: list[str], cls: type, declared: type
) -> pulumi.ResourceOptions:
    """The caller's `opts`, the outputs Pulumi must keep secret, and an alias to each token the
    resources of `cls` (the class `declared` or a subclass) may be in state under."""
    ours = pulumi.ResourceOptions(
        additional_secret_outputs=secret_outputs,
        aliases=[pulumi.Alias(type_=token) for token in earlier_tokens(cls, declared)],
    )
    return pulumi.ResourceOptions.merge(opts, ours)

"""Keys of our namespaces that nothing reads, found and told with the command that removes them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from convai_provider.resources.settings import CONFIG_KEYS as PROVIDER_KEYS
from convai_stack.config_keys import (
    DEV_STACK,
    ENDPOINTS_KEY,
    PROJECT,
    PROVIDER_NAMESPACE,
    SECRET_KEY_FIELDS,
)
from convai_stack.stack_files import stack_file


@dataclass(frozen=True)
class StackKeys:
    """Where a stack's keys are, for the command that removes one: the stack's name and which of
    its keys hold secrets."""

    name: str
    secrets: frozenset[str] = frozenset()

    def removal(self, key: str) -> str:
        if self.name != DEV_STACK:
            return f"`pulumi config rm --stack {self.name} {key}`"
        # dev-up keeps the dev stack's secrets, and copies the rest from its file at every run
        if key in self.secrets:
            return f"`scripts/dev-up config rm {key}`"
        return f"an edit of {stack_file(self.name)}"


def unknown_key_problems(
    keys: Iterable[str],
    values: Mapping[str, Any],
    where: StackKeys | None = None,
    *,
    settings: Iterable[str],
) -> list[str]:
    """One line per key of our namespaces (`convai-models:`, `convai:`) that nothing reads.

    Nothing would ever read such a key, so a typo would be silently ignored: `convai-models:model`
    declares no models (and `pulumi up` would deregister every one), `convai:baseURL` leaves the
    key travelling to the public Convai URL. `values` (the project's, unprefixed) tell which
    secret keys the endpoints name; `settings` are the schema's (`StackConfig`'s fields)."""
    known = known_keys(values, settings)
    # Compared without the namespace, which every key shares: `apiKey` set in the project's
    # namespace is the provider's `convai:apiKey`.
    by_name = {k.partition(":")[2].lower(): k for k in known}
    problems = []
    # Endpoints that do not read (the schema says why) name secrets no one can tell yet.
    endpoints_unread = not isinstance(values.get(ENDPOINTS_KEY, []), list)
    for key in keys:
        namespace, _, name = key.partition(":")
        if namespace not in (PROJECT, PROVIDER_NAMESPACE) or key in known:
            continue
        if endpoints_unread and namespace == PROJECT:
            continue
        close = difflib.get_close_matches(name.lower(), by_name, n=1)
        hint = (
            f"did you mean {by_name[close[0]]}?"
            if close
            else f"the settings are {', '.join(sorted(known, key=str.lower))}."
        )
        removal = where.removal(key) if where else f"`pulumi config rm {key}`"
        problems.append(
            f"{key}: neither a setting of this project nor a secret an endpoint names, so nothing "
            f"would read it; {hint} Rename it, or remove it with {removal}"
        )
    return problems


def known_keys(values: Mapping[str, Any], settings: Iterable[str]) -> set[str]:
    """Every key of our namespaces a stack may set: the schema's `settings`, the provider's, and
    the secret keys its endpoints name (a key without a namespace is in the project's, as Pulumi
    has it)."""
    named = set()
    endpoints = values.get(ENDPOINTS_KEY)
    for endpoint in endpoints if isinstance(endpoints, list) else []:
        if isinstance(endpoint, Mapping):
            named |= {endpoint[f] for f in SECRET_KEY_FIELDS if isinstance(endpoint.get(f), str)}
    return (
        {f"{PROJECT}:{k}" for k in settings}
        | set(PROVIDER_KEYS)
        | {k if ":" in k else f"{PROJECT}:{k}" for k in named}
    )

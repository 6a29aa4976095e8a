"""The resources' Pulumi type tokens: part of every URN in state, so they never change.

A new token would make Pulumi replace every resource declared with the old one. They live apart
from the resource modules so that what reads state (`convai-models recover`) needs no Pulumi SDK.
"""

from __future__ import annotations

from typing import Any

MODULE = "convai"
"""The resource classes' `module`: with Pulumi's `pulumi-python:dynamic/` prefix, the token's
first part."""

TYPE_TOKEN = f"pulumi-python:dynamic/{MODULE}:PrivateModel"
CHARACTER_TYPE_TOKEN = f"pulumi-python:dynamic/{MODULE}:CharacterModel"


def kept_type_token(cls: type, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a subclass of a resource class (a team's own `class TeamModel(ConvaiPrivateModel)`)
    passes on to Pulumi's dynamic `Resource`: the same token, which `Resource` would otherwise
    reset to `pulumi-python:dynamic:Resource`, changing its URN and hiding it from the policy
    pack, which tells resources apart by token. A subclass naming another token is refused."""
    if "module" in kwargs or "name" in kwargs:
        raise TypeError(
            f"{cls.__name__}: a subclass of a Convai resource keeps its type token "
            f"(pulumi-python:dynamic/{MODULE}:{name}): leave module and name out"
        )
    return {**kwargs, "module": MODULE, "name": name}


DYNAMIC_DEFAULT_TOKEN = "pulumi-python:dynamic:Resource"
"""The token Pulumi's dynamic `Resource` gives a class that names none."""


def earlier_tokens(cls: type, declared: type) -> list[str]:
    """The other tokens `cls`'s resources may be in state under. Before kept_type_token, a
    subclass's resources got the dynamic default token: aliased to it, they move to the kept
    token with no replacement (an alias no resource of state has is ignored)."""
    return [] if cls is declared else [DYNAMIC_DEFAULT_TOKEN]

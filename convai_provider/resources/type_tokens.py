"""The resources' Pulumi type tokens: part of every URN in state, so they never change.

A new token would make Pulumi replace every resource declared with the old one. They live apart
from the resource modules so that what reads state (`convai-models recover`) needs no Pulumi SDK.
"""

from __future__ import annotations

MODULE = "convai"
"""The resource classes' `module`: with Pulumi's `pulumi-python:dynamic/` prefix, the token's
first part."""

TYPE_TOKEN = f"pulumi-python:dynamic/{MODULE}:PrivateModel"
CHARACTER_TYPE_TOKEN = f"pulumi-python:dynamic/{MODULE}:CharacterModel"

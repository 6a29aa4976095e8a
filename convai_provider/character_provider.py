"""The dynamic provider behind ConvaiCharacterModel: which model a character uses.

While the binding exists, the character uses `model_group_name`; deleting the binding moves the
character to `fallback_model_group_name`. Because the binding's diff asks for replacement when its
model changes or is unknown, Pulumi deletes it (fallback) before it deregisters a model it
depends on, and creates it again (back to the model) afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult
from pydantic import BaseModel, ConfigDict

from .builtin_models import DEFAULT_FALLBACK_MODEL
from .errors import BadRequestError, ConvaiError
from .model_schema import Name
from .provider_base import ConvaiOperationError, ConvaiProvider, check_inputs, differs

log = logging.getLogger("convai_provider")

"""A built-in Convai model: always there, so a character on it always answers."""

REPLACE_FIELDS = ("char_id", "model_group_name")


class CharacterBindingInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    char_id: Name
    """Required, replaces on change: the Convai character ID."""
    model_group_name: Name
    """Required, replaces on change (fallback, then the new model): a private model's group
    name or a built-in model code."""
    fallback_model_group_name: Name = DEFAULT_FALLBACK_MODEL
    """Optional: where the character goes when the binding is deleted. Updates in place."""


def _subject(char_id: str, model_group_name: str | None = None) -> str:
    if model_group_name is None:
        return f"Convai character '{char_id}'"
    return f"Convai character '{char_id}' to model '{model_group_name}'"


def _character_gone(exc: ConvaiError) -> bool:
    return isinstance(exc, BadRequestError) and "not found" in exc.message.lower()


class CharacterModelProvider(ConvaiProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_inputs(CharacterBindingInputs, news)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [f for f in REPLACE_FIELDS if differs(olds.get(f), news.get(f))]
        fallback = "fallback_model_group_name"
        changed = bool(replaces) or differs(olds.get(fallback), news.get(fallback))
        return DiffResult(
            changes=changed, replaces=replaces, stables=[], delete_before_replace=True
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = CharacterBindingInputs.model_validate(_declared(props))
        self._point(inputs.char_id, inputs.model_group_name, "bind")
        return CreateResult(inputs.char_id, inputs.model_dump())

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only the fallback can change in place (diff replaces on anything else): it is used
        when the binding is deleted, so nothing is sent now."""
        inputs = CharacterBindingInputs.model_validate(_declared(news))
        return UpdateResult(inputs.model_dump())

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        runtime = self._runtime()
        try:
            character = runtime.operation().character(id_)
        except ConvaiError as exc:
            if _character_gone(exc):
                log.info("Convai character %s is gone; dropping its binding from state", id_)
                return ReadResult("", {})
            raise ConvaiOperationError("read", _subject(id_), exc) from None
        outputs = {k: v for k, v in props.items() if k in CharacterBindingInputs.model_fields}
        if character.model_group_name is not None:
            # Convai reported the model: refresh records drift. Absent, state is kept as is.
            outputs["model_group_name"] = character.model_group_name
        return ReadResult(id_, outputs, dict(outputs))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        fallback = str(props.get("fallback_model_group_name") or DEFAULT_FALLBACK_MODEL)
        self._point(id_, fallback, "move to the fallback", missing_ok=True)

    def _point(
        self, char_id: str, model_group_name: str, operation: str, missing_ok: bool = False
    ) -> None:
        runtime = self._runtime()
        try:
            runtime.operation().set_character_model(char_id, model_group_name)
        except ConvaiError as exc:
            if missing_ok and _character_gone(exc):
                log.info("Convai character %s was already gone", char_id)
                return
            raise ConvaiOperationError(
                operation, _subject(char_id, model_group_name), exc
            ) from None


def _declared(props: Mapping[str, Any]) -> dict[str, Any]:
    fields = CharacterBindingInputs.model_fields
    return {k: v for k, v in props.items() if k in fields and v is not None}

"""`ConvaiCharacterModel`: a character bound to the model it uses, with a safe fallback.

While the binding exists, the character uses `model_group_name`; deleting the binding moves the
character to `fallback_model_group_name`. Because the binding's diff asks for replacement when its
model changes or is unknown, Pulumi deletes it (fallback) before it deregisters a model it
depends on, and creates it again (back to the model) afterwards.

Schema (`CharacterModelInputs`), provider (`CharacterModelProvider`), resource class
(`ConvaiCharacterModel`), in that order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)
from pydantic import BaseModel, ConfigDict, Field

from convai_provider.api.accounts import ACCOUNT_KEY, account_name
from convai_provider.api.builtin_models import DEFAULT_FALLBACK_MODEL
from convai_provider.api.errors import BadRequestError, ConvaiError
from convai_provider.resources.base import ConvaiProvider
from convai_provider.resources.field_docs import on_change, replacing_fields
from convai_provider.resources.fields import AccountAlias, Name
from convai_provider.resources.inputs import check_inputs, differs, is_unknown, merge_args
from convai_provider.resources.key_identity import KEY_FINGERPRINT, seen_with, why_not_gone
from convai_provider.resources.options import resource_options
from convai_provider.resources.private_model import ConvaiPrivateModel
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_provider.resources.pulumi_outputs import settle_outputs_in_one_wait
from convai_provider.resources.pulumi_pickling import provider_serialization
from convai_provider.resources.runtime import ConvaiRuntime
from convai_provider.resources.type_tokens import MODULE, kept_type_token

log = logging.getLogger("convai_provider")


# schema -----------------------------------------------------------------------------------------

_REBINDS = on_change(
    "replaces: moves the character to the fallback, then binds it to the new model",
    replaces=True,
)


class CharacterModelInputs(BaseModel):
    """What a ConvaiCharacterModel declares, validated for plan time."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    char_id: Name = Field(json_schema_extra=_REBINDS)
    """The Convai character ID."""
    model_group_name: Name = Field(json_schema_extra=_REBINDS)
    """The model the character uses while the binding exists: a private model's group name (pass
    the model's output, `model.model_group_name`, or the model itself as `model=`) or a built-in
    model code."""
    fallback_model_group_name: Name = DEFAULT_FALLBACK_MODEL
    """Where the character goes when the binding is deleted: a built-in Convai model code, or a
    private model that outlives the binding."""
    account: AccountAlias | None = Field(
        default=None,
        json_schema_extra=on_change(
            "refused at preview: a character lives in one account and uses that account's models "
            "only (a rename of the alias to the same key changes nothing)"
        ),
    )
    """The account of the character and of its model (an alias of the stack's convai:accounts);
    left out, the model's when `model=` is given, else the account of convai:apiKey."""


INPUT_FIELDS = tuple(CharacterModelInputs.model_fields)
REPLACE_FIELDS = replacing_fields(CharacterModelInputs)
COMPUTED_FIELDS = (KEY_FINGERPRINT,)
"""Outputs only: the fingerprint of the Convai key that bound the character or last saw it, so
that another account's key never takes the character for gone (resources.key_identity)."""
COMPUTED_DOCS = {
    KEY_FINGERPRINT: "A fingerprint of the Convai key that bound the character or last saw it "
    "(never the key): how another account's key is told from this binding's "
    "(docs/state-integrity.md).",
}

BINDING = "binding"
"""A change moves the character to the fallback, then binds it anew."""


# provider ---------------------------------------------------------------------------------------


def _subject(char_id: str, model_group_name: str | None = None) -> str:
    if model_group_name is None:
        return f"Convai character '{char_id}'"
    return f"Convai character '{char_id}' to model '{model_group_name}'"


def _character_gone(exc: ConvaiError, char_id: str) -> bool:
    """Only Convai's own answer for that call says a character is gone: a 400 whose body is the
    Character API's `{"ERROR": ...}` alone, saying this character was not found. A proxy's
    page or any other 400 that happens to say "not found" leaves the binding in state."""
    message = exc.message.lower() if isinstance(exc, BadRequestError) else ""
    return (
        isinstance(exc, BadRequestError)
        and exc.envelope
        and "not found" in message
        and f"'{char_id.lower()}'" in message
    )


class CharacterModelProvider(ConvaiProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = check_inputs(CharacterModelInputs, news, COMPUTED_FIELDS)
        if not result.failures:
            result.failures = self._account_failures(news)
        return result

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        old_account, new_account = olds.get(ACCOUNT_KEY), news.get(ACCOUNT_KEY)
        # An account not known at preview (an Output of a resource still to be made) is judged
        # at `up`, when it is: it is no move, and naming it "the default account" would be false.
        renamed = self._account_renamed(olds, news)
        if not is_unknown(new_account) and old_account != new_account and not renamed:
            raise ConvaiOperationError(
                "move",
                _subject(id_),
                f"it is bound in {account_name(old_account)}, and now declared in "
                f"{account_name(new_account)}: a character lives in one Convai account "
                "and uses models of that account only, so neither it nor a model it uses can move "
                "to another. Keep the model in its account; to serve the character from the "
                "other account, bind a character of that account instead",
            )
        replaces = [f for f in REPLACE_FIELDS if differs(olds.get(f), news.get(f))]
        fallback = "fallback_model_group_name"
        changed = bool(replaces) or renamed or differs(olds.get(fallback), news.get(fallback))
        return DiffResult(
            changes=changed, replaces=replaces, stables=[], delete_before_replace=True
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = CharacterModelInputs.model_validate(_declared(props))
        runtime = self._point(inputs.char_id, inputs.model_group_name, "bind", inputs.account)
        fingerprint = seen_with(runtime.settings.api_key, None)
        return CreateResult(inputs.char_id, inputs.model_dump() | {KEY_FINGERPRINT: fingerprint})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only the fallback can change in place (diff replaces on anything else): it is used
        when the binding is deleted, so nothing is sent now."""
        inputs = CharacterModelInputs.model_validate(_declared(news))
        return UpdateResult(inputs.model_dump() | {KEY_FINGERPRINT: olds.get(KEY_FINGERPRINT)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        runtime = self._account_runtime("read", _subject(id_), props.get(ACCOUNT_KEY))
        api_key = runtime.settings.api_key
        try:
            character = runtime.account.operation().character(id_)
        except ConvaiError as exc:
            if not _character_gone(exc, id_):
                raise ConvaiOperationError("read", _subject(id_), exc) from None
            refusal = why_not_gone(
                api_key, props.get(KEY_FINGERPRINT), BINDING, props.get(ACCOUNT_KEY)
            )
            if refusal is not None:
                raise ConvaiOperationError("read", _subject(id_), refusal) from None
            log.info("Convai character %s is gone; dropping its binding from state", id_)
            return ReadResult("", {})
        inputs = {k: v for k, v in props.items() if k in INPUT_FIELDS}
        if character.model_group_name is not None:
            # Convai reported the model: refresh records drift. Absent, state is kept as is.
            inputs["model_group_name"] = character.model_group_name
        seen = seen_with(api_key, props.get(KEY_FINGERPRINT))
        return ReadResult(id_, inputs | {KEY_FINGERPRINT: seen}, inputs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        fallback = str(props.get("fallback_model_group_name") or DEFAULT_FALLBACK_MODEL)
        self._point(
            id_, fallback, "move to the fallback", props.get(ACCOUNT_KEY), gone_if_recorded=props
        )

    def _point(
        self,
        char_id: str,
        model_group_name: str,
        operation: str,
        account: object,
        gone_if_recorded: Mapping[str, Any] | None = None,
    ) -> ConvaiRuntime:
        """`gone_if_recorded`: the binding's state, when a character Convai does not hold under
        the key that bound it counts as already gone (a delete)."""
        subject = _subject(char_id, model_group_name)
        runtime = self._account_runtime(operation, subject, account)
        try:
            runtime.account.operation().set_character_model(char_id, model_group_name)
        except ConvaiError as exc:
            if gone_if_recorded is None or not _character_gone(exc, char_id):
                raise ConvaiOperationError(operation, subject, exc) from None
            recorded = gone_if_recorded.get(KEY_FINGERPRINT)
            refusal = why_not_gone(runtime.settings.api_key, recorded, BINDING, account)
            if refusal is not None:
                raise ConvaiOperationError(operation, subject, refusal) from None
            log.info("Convai character %s was already gone", char_id)
        return runtime


def _declared(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k in INPUT_FIELDS and v is not None}


# resource ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class ConvaiCharacterModelArgs:
    """Inputs of a ConvaiCharacterModel: each field's doc and default are CharacterModelInputs'
    (and docs/reference.md's); left None, an input takes its default at check."""

    char_id: pulumi.Input[str]
    model_group_name: pulumi.Input[str]
    fallback_model_group_name: pulumi.Input[str] | None = None
    account: pulumi.Input[str] | None = None


class ConvaiCharacterModel(Resource, module=MODULE, name="CharacterModel"):
    """While this exists, character `char_id` uses `model_group_name`; deleted, it falls back.

    Pass the model's output (`model.model_group_name`) so Pulumi knows the binding depends on the
    model: then a model replacement or removal first moves the character to the fallback. Or
    pass the model itself (`model=`): its group name and its account are then the binding's, and
    an `account` that is not the model's is refused before anything is registered.
    """

    if TYPE_CHECKING:  # for type checkers only, as ConvaiPrivateModel's outputs
        char_id: pulumi.Output[str]
        model_group_name: pulumi.Output[str]
        fallback_model_group_name: pulumi.Output[str]
        account: pulumi.Output[str | None]
        convai_key_fingerprint: pulumi.Output[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass is this resource: it keeps the type token (resources.type_tokens)."""
        super().__init_subclass__(**kept_type_token(cls, "CharacterModel", kwargs))

    def __init__(
        self,
        resource_name: str,
        args: ConvaiCharacterModelArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        char_id: pulumi.Input[str] | None = None,
        model_group_name: pulumi.Input[str] | None = None,
        fallback_model_group_name: pulumi.Input[str] | None = None,
        account: pulumi.Input[str] | None = None,
        model: ConvaiPrivateModel | None = None,
    ) -> None:
        # One keyword per input, named as the input (tests tie the signature to the schema).
        keywords = {name: value for name, value in locals().items() if name in INPUT_FIELDS}
        props = merge_args(args, keywords)
        if model is not None:
            props = _bound_to(model, props, resource_name)
        for output in (*INPUT_FIELDS, *COMPUTED_FIELDS):
            props.setdefault(output, None)
        settle_outputs_in_one_wait()
        with provider_serialization():
            super().__init__(
                CharacterModelProvider(),
                resource_name,
                props,
                resource_options(opts, [KEY_FINGERPRINT], type(self), ConvaiCharacterModel),
            )


def _bound_to(model: ConvaiPrivateModel, props: dict[str, Any], name: str) -> dict[str, Any]:
    """A binding of `model`: its group name and account unless given; a character lives in one
    account and uses that account's models only, so another account is refused: at preview when
    both are plain values, else when the Outputs resolve (before the binding is sent)."""
    own, given = model.declared_account, props.get(ACCOUNT_KEY)
    account: Any = own
    if given is not None:
        if isinstance(given, pulumi.Output) or isinstance(own, pulumi.Output):
            pair = pulumi.Output.all(given, own)
            account = pair.apply(lambda accounts: _one_account(name, model, *accounts))
        else:
            account = _one_account(name, model, given, own)
    declared = {k: v for k, v in props.items() if v is not None and k != ACCOUNT_KEY}
    return {"model_group_name": model.model_group_name, ACCOUNT_KEY: account} | declared


def _one_account(name: str, model: ConvaiPrivateModel, given: object, own: object) -> object:
    """The binding's account, when it is its model's."""
    if given != own:
        raise pulumi.RunError(
            f"ConvaiCharacterModel '{name}': it is declared in {account_name(given)}, but its "
            f"model '{model.resource_name}' is in {account_name(own)}: a character uses models "
            "of its own account only. Leave account out (the model's is taken) or bind a "
            "model of that account"
        )
    return given

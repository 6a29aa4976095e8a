"""`ConvaiPrivateModel`: a Convai private LLM model as a Pulumi resource.

In the order of a Terraform provider's resource file: the schema (`PrivateModelInputs`, in
`private_model_inputs`, which the stack schema shares and which loads no Pulumi), the provider
(`PrivateModelProvider`: check, diff, create, read, update, delete) and the resource class the
program declares (`ConvaiPrivateModel`), whose Args, keywords and outputs tests tie to the schema.
The resource class runs in the program; the provider runs in Pulumi's provider process (`python -m
pulumi.dynamic`), four calls at a time on one instance, which is pickled into state and so carries
no key, client or lock.
"""

from __future__ import annotations

import functools
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

from convai_provider.api.account import Operation
from convai_provider.api.accounts import ACCOUNT_KEY
from convai_provider.api.client import build_request
from convai_provider.api.errors import ConflictError, ConvaiError, NotFoundError
from convai_provider.api.matching import as_declared, differences
from convai_provider.api.wire import UPDATABLE_FIELDS, PrivateModel, UpdateRequest
from convai_provider.guards.text import sentence
from convai_provider.preflight.checks import PreflightReport, check_endpoint
from convai_provider.resources.base import ConvaiProvider
from convai_provider.resources.inputs import PROVIDER_KEY, check_inputs, differs, merge_args
from convai_provider.resources.key_identity import KEY_FINGERPRINT, seen_with, why_not_gone
from convai_provider.resources.options import resource_options
from convai_provider.resources.private_model_inputs import (
    COMPUTED_FIELDS,
    ENDPOINT_FIELDS,
    INPUT_FIELDS,
    REPLACE_FIELDS,
    PrivateModelInputs,
)
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_provider.resources.pulumi_outputs import settle_outputs_in_one_wait
from convai_provider.resources.pulumi_pickling import provider_serialization
from convai_provider.resources.runtime import ConvaiRuntime
from convai_provider.resources.type_tokens import MODULE, kept_type_token

# provider ---------------------------------------------------------------------------------------

log = logging.getLogger("convai_provider")

INTERRUPTED_HINT = (
    "If an interrupted `pulumi up` of this stack registered it (Pulumi warned of pending "
    "operations), settle those with `convai-models recover` (docs/operations.md, 'Interrupted "
    "updates')."
)


class PrivateModelProvider(ConvaiProvider):
    """Convai private models, managed with Terraform's semantics."""

    # check ----------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = check_inputs(PrivateModelInputs, news, COMPUTED_FIELDS)
        if not result.failures:
            result.failures = self._account_failures(news)
        return result

    # diff -----------------------------------------------------------------------------------

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [f for f in REPLACE_FIELDS if differs(olds.get(f), news.get(f))]
        account_changed = differs(olds.get(ACCOUNT_KEY), news.get(ACCOUNT_KEY))
        moved = account_changed and not self._account_renamed(olds, news)
        updates = self._updated_fields(olds, news)
        return DiffResult(
            changes=bool(replaces or updates or account_changed),
            replaces=[*replaces, ACCOUNT_KEY] if moved else replaces,
            stables=[],
            # In one account the name is taken until the old model goes; across two it is not,
            # so a move registers in the new account before it deregisters from the old.
            delete_before_replace=not moved,
        )

    @staticmethod
    def _updated_fields(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """An unknown value differs from anything; one left out is Convai's to keep."""
        return [d.field for d in differences(olds, news, UPDATABLE_FIELDS)]

    # create ---------------------------------------------------------------------------------

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = PrivateModelInputs.model_validate(_declared(props))
        runtime = self._account_runtime("create", _subject(inputs.model_group_name), inputs.account)
        if inputs.verify_endpoint:
            self._verify_endpoint(runtime, "create", inputs)
        convai = runtime.account.operation()
        try:
            if inputs.adopt_existing:
                outputs = self._adopt(convai, inputs)
            else:
                outputs = self._register(convai, inputs)
        except ConvaiError as exc:
            raise ConvaiOperationError("create", _subject(inputs.model_group_name), exc) from None
        outputs[KEY_FINGERPRINT] = seen_with(runtime.settings.api_key, None)
        return CreateResult(inputs.model_group_name, outputs)

    @staticmethod
    def _register(convai: Operation, inputs: PrivateModelInputs) -> dict[str, Any]:
        try:
            registered = convai.register(inputs.register_request())
        except ConflictError as conflict:
            # A model of this name that was there before this create may be another stack's:
            # never take it silently; say what Convai holds and how to take it, if it is ours.
            raise ConvaiOperationError(
                "create",
                _subject(inputs.model_group_name),
                f"{conflict} {_what_convai_holds(convai, inputs)} {INTERRUPTED_HINT}",
            ) from None
        log.info("registered Convai private model %s", inputs.model_group_name)
        return inputs.registered_outputs(registered)

    def _adopt(self, convai: Operation, inputs: PrivateModelInputs) -> dict[str, Any]:
        live = convai.listed_from_now(inputs.model_group_name)
        if live is None:
            return self._register(convai, inputs)
        if live.model_name != inputs.model_name:
            raise ConvaiOperationError(
                "adopt",
                _subject(inputs.model_group_name),
                f"Convai serves it as model_name '{live.model_name}' but the resource declares "
                f"'{inputs.model_name}'; model_name cannot be updated, so declare "
                f"'{live.model_name}' or choose another model_group_name",
            )
        old = live.model_dump() | {"api_key": None}
        sent = self._send_update(convai, inputs.model_group_name, old, inputs.model_dump())
        log.info(
            "adopted Convai private model %s (updated: %s)",
            inputs.model_group_name,
            ", ".join(sent),
        )
        adopted = live.model_copy(update=_declared_updates(inputs))
        return inputs.outputs(adopted)

    @staticmethod
    def _verify_endpoint(
        runtime: ConvaiRuntime, operation: str, inputs: PrivateModelInputs
    ) -> None:
        report = check_endpoint(
            inputs.base_url,
            inputs.model_name,
            inputs.api_key,
            wait=runtime.settings.verify_timeout,
            on_wait=functools.partial(
                _say_waiting, inputs.model_group_name, runtime.settings.verify_timeout
            ),
        )
        if not report.ok:
            raise ConvaiOperationError(
                operation,
                _subject(inputs.model_group_name),
                f"{report.summary()} Nothing was sent to Convai. Fix the endpoint, or set "
                "verify_endpoint to false (in a stack file: `verify_endpoint: false`) to "
                "register it unchecked.",
            )

    # read -----------------------------------------------------------------------------------

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        runtime = self._account_runtime("read", _subject(id_), props.get(ACCOUNT_KEY))
        try:
            live = runtime.account.operation().listed(id_)
        except ConvaiError as exc:
            raise ConvaiOperationError("read", _subject(id_), exc) from None
        api_key = runtime.settings.api_key
        if live is None:
            refusal = why_not_gone(
                api_key, props.get(KEY_FINGERPRINT), account=props.get(ACCOUNT_KEY)
            )
            if refusal is not None:
                raise ConvaiOperationError("read", _subject(id_), refusal)
            log.info("Convai private model %s is gone; dropping it from state", id_)
            return ReadResult("", {})
        outputs = _live_outputs(live, props)
        outputs[KEY_FINGERPRINT] = seen_with(api_key, props.get(KEY_FINGERPRINT))
        inputs = {k: v for k, v in outputs.items() if k not in COMPUTED_FIELDS}
        return ReadResult(id_, outputs, inputs)

    # update ---------------------------------------------------------------------------------

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = PrivateModelInputs.model_validate(_declared(news))
        runtime = self._account_runtime("update", _subject(id_), inputs.account)
        if inputs.verify_endpoint and any(
            differs(olds.get(f), news.get(f)) for f in ENDPOINT_FIELDS
        ):
            self._verify_endpoint(runtime, "update", inputs)
        try:
            changed = self._send_update(runtime.account.operation(), id_, olds, news)
        except NotFoundError as exc:
            # Under another account's key (a mistyped one) every model is "not found": say so.
            other_key = why_not_gone(
                runtime.settings.api_key, olds.get(KEY_FINGERPRINT), account=olds.get(ACCOUNT_KEY)
            )
            cause = f"{sentence(str(exc))} {other_key}" if other_key else exc
            raise ConvaiOperationError("update", _subject(id_), cause) from None
        except ConvaiError as exc:
            raise ConvaiOperationError("update", _subject(id_), exc) from None
        outputs = inputs.model_dump()
        for field in (*UPDATABLE_FIELDS, *COMPUTED_FIELDS):
            if outputs.get(field) is None:
                outputs[field] = olds.get(field)
        if changed:  # Convai took the update: the model is in the account of the key in use
            recorded = olds.get(KEY_FINGERPRINT)
            outputs[KEY_FINGERPRINT] = seen_with(runtime.settings.api_key, recorded)
        return UpdateResult(outputs)

    def _send_update(
        self,
        convai: Operation,
        model_group_name: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
    ) -> list[str]:
        """Sends the fields that changed; returns their names."""
        changed = {f: news[f] for f in self._updated_fields(olds, news)}
        if not changed:
            return []
        convai.update(build_request(UpdateRequest, model_group_name=model_group_name, **changed))
        return list(changed)

    # delete ---------------------------------------------------------------------------------

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        runtime = self._account_runtime("delete", _subject(id_), props.get(ACCOUNT_KEY))
        try:
            deregistered = runtime.account.operation().deregister(id_)
        except ConvaiError as exc:
            raise ConvaiOperationError("delete", _subject(id_), exc) from None
        if not deregistered:
            recorded = props.get(KEY_FINGERPRINT)
            refusal = why_not_gone(
                runtime.settings.api_key, recorded, account=props.get(ACCOUNT_KEY)
            )
            if refusal is not None:
                raise ConvaiOperationError("delete", _subject(id_), refusal)
            log.info("Convai private model %s was already gone", id_)


def _what_convai_holds(convai: Operation, inputs: PrivateModelInputs) -> str:
    """After a 409: the model Convai holds under that name against the declaration, and the exact
    way to take it over when it is this stack's (a run killed after its register landed leaves no
    pending operation to recover: its create simply failed)."""
    try:
        live = convai.listed_from_now(inputs.model_group_name)
    except ConvaiError as exc:
        return f"(The list to compare it with the declaration failed: {exc})"
    group = inputs.model_group_name
    if live is None:
        return (
            f"Convai lists no model named '{group}': another model holds display_name "
            f"{inputs.display_name!r} (unique in the account), or '{group}' was deleted since."
        )
    found = differences(live.model_dump(), as_declared(inputs.register_request()))
    if found:
        return (
            f"Convai's '{group}' is not this declaration ({'; '.join(map(str, found))}): "
            "another stack's or person's model; choose another model_group_name."
        )
    return (
        f"Convai holds '{group}' exactly as declared (the endpoint key cannot be compared). If "
        f"this stack registered it in a run that was killed, take it over: set "
        f"`adopt_existing: true` on model '{group}' in the stack file's convai-models:models "
        f"(adopt_existing=True in a program) for one `pulumi up`, then remove it; if another "
        f"stack or person registered it, choose another model_group_name."
    )


def _subject(model_group_name: str) -> str:
    return f"Convai private model '{model_group_name}'"


def _declared(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k in INPUT_FIELDS and v is not None}


def _say_waiting(group: str, budget: float, report: PreflightReport) -> None:
    """A line on the provider's stderr, which the CLI shows as it comes, on the stack's row (a
    dynamic provider cannot attach a message to its resource: pulumi/pulumi#6065)."""
    log.info(
        "%s: waiting for its endpoint (%.0fs of convai:verifyTimeout %.0fs): %s",
        group,
        report.waited,
        budget,
        report.summary(),
    )


def _declared_updates(inputs: PrivateModelInputs) -> dict[str, Any]:
    return {
        f: getattr(inputs, f)
        for f in UPDATABLE_FIELDS
        if f != "api_key" and getattr(inputs, f) is not None
    }


def _live_outputs(live: PrivateModel, stored: Mapping[str, Any]) -> dict[str, Any]:
    """What refresh records: Convai's view, plus what the API never returns, kept from state."""
    outputs = {k: v for k, v in stored.items() if k in INPUT_FIELDS and k != PROVIDER_KEY}
    outputs.update(live.documented())
    return outputs


# resource ---------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class ConvaiPrivateModelArgs:
    """Inputs of a ConvaiPrivateModel: each field's doc and default are PrivateModelInputs' (and
    docs/reference.md's); left None, an input takes its default at check."""

    model_group_name: pulumi.Input[str]
    model_name: pulumi.Input[str]
    api_key: pulumi.Input[str]
    is_uncensored: pulumi.Input[bool] | None = None
    display_name: pulumi.Input[str] | None = None
    base_url: pulumi.Input[str] | None = None
    adopt_existing: pulumi.Input[bool] | None = None
    verify_endpoint: pulumi.Input[bool] | None = None
    account: pulumi.Input[str] | None = None


class ConvaiPrivateModel(Resource, module=MODULE, name="PrivateModel"):
    """A private, OpenAI-compatible LLM endpoint registered with Convai.

    `model_group_name` and `model_name` replace the model when changed (Convai deletes it first:
    characters using it stop working meanwhile), and so does `account`; the other inputs update in
    place (each input: docs/reference.md). `api_key` is always a secret. Deregistering a model
    breaks the characters that use it: protect production models with
    `opts=pulumi.ResourceOptions(protect=True)`.
    """

    if TYPE_CHECKING:
        # For type checkers only. At run time every output is an attribute already (the
        # SDK makes one of each prop), and Pulumi's SDK would evaluate these annotations
        # again for each resource it resolves (`resource_types`: 0.3 ms a model).
        model_group_name: pulumi.Output[str]
        model_name: pulumi.Output[str]
        api_key: pulumi.Output[str]
        is_uncensored: pulumi.Output[bool]
        display_name: pulumi.Output[str | None]
        base_url: pulumi.Output[str]
        adopt_existing: pulumi.Output[bool]
        verify_endpoint: pulumi.Output[bool]
        account: pulumi.Output[str | None]
        category: pulumi.Output[str]
        created_at: pulumi.Output[str]
        convai_key_fingerprint: pulumi.Output[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass is this resource: it keeps the type token (resources.type_tokens)."""
        super().__init_subclass__(**kept_type_token(cls, "PrivateModel", kwargs))

    def __init__(
        self,
        resource_name: str,
        args: ConvaiPrivateModelArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        model_group_name: pulumi.Input[str] | None = None,
        model_name: pulumi.Input[str] | None = None,
        api_key: pulumi.Input[str] | None = None,
        is_uncensored: pulumi.Input[bool] | None = None,
        display_name: pulumi.Input[str] | None = None,
        base_url: pulumi.Input[str] | None = None,
        adopt_existing: pulumi.Input[bool] | None = None,
        verify_endpoint: pulumi.Input[bool] | None = None,
        account: pulumi.Input[str] | None = None,
    ) -> None:
        # One keyword per input, named as the input (tests tie the signature to the schema).
        keywords = {name: value for name, value in locals().items() if name in INPUT_FIELDS}
        props = merge_args(args, keywords)
        if props.get("api_key") is not None:
            props["api_key"] = pulumi.Output.secret(props["api_key"])
        for output in (*INPUT_FIELDS, *COMPUTED_FIELDS):
            props.setdefault(output, None)  # None declares an output Pulumi fills after create
        settle_outputs_in_one_wait()
        with provider_serialization():
            super().__init__(
                PrivateModelProvider(),
                resource_name,
                props,
                resource_options(
                    opts, ["api_key", KEY_FINGERPRINT], type(self), ConvaiPrivateModel
                ),
            )
        self.resource_name = resource_name
        self.declared_account = account
        """The account as declared (an alias, None, or an Output): what a binding given this
        model (`ConvaiCharacterModel(model=...)`) is checked against at preview."""

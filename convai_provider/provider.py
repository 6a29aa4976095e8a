"""The dynamic provider behind ConvaiPrivateModel: check, diff, create, read, update, delete.

Runs in Pulumi's provider process (`python -m pulumi.dynamic`), four calls at a time on one
instance. The instance is pickled into state, so it carries no key, client or lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from .account import Operation
from .client import build_request
from .errors import ConflictError, ConvaiError, NotFoundError
from .matching import differences
from .model_schema import (
    COMPUTED_FIELDS,
    ENDPOINT_FIELDS,
    INPUT_FIELDS,
    REPLACE_FIELDS,
    UPDATE_FIELDS,
    PrivateModelInputs,
)
from .preflight import check_endpoint
from .provider_base import (
    PROVIDER_KEY,
    ConvaiOperationError,
    ConvaiProvider,
    check_inputs,
    differs,
)
from .runtime import ConvaiRuntime
from .wire import PrivateModel, UpdateRequest

log = logging.getLogger("convai_provider")

INTERRUPTED_HINT = (
    "If an interrupted `pulumi up` of this stack registered it (Pulumi warned of pending "
    "operations), settle those with `convai-models recover` (README, 'Interrupted updates')."
)


class PrivateModelProvider(ConvaiProvider):
    """Convai private models, managed with Terraform's semantics."""

    # check ----------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_inputs(PrivateModelInputs, news, COMPUTED_FIELDS)

    # diff -----------------------------------------------------------------------------------

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [f for f in REPLACE_FIELDS if differs(olds.get(f), news.get(f))]
        updates = self._updated_fields(olds, news)
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            stables=[],
            delete_before_replace=True,
        )

    @staticmethod
    def _updated_fields(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """An unknown value differs from anything; one left out is Convai's to keep."""
        return [d.field for d in differences(olds, news, UPDATE_FIELDS)]

    # create ---------------------------------------------------------------------------------

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = PrivateModelInputs.model_validate(_declared(props))
        runtime = self._runtime()
        if inputs.verify_endpoint:
            self._verify_endpoint(runtime, "create", inputs)
        convai = runtime.operation()
        try:
            if inputs.adopt_existing:
                outputs = self._adopt(convai, inputs)
            else:
                outputs = self._register(convai, inputs)
        except ConvaiError as exc:
            raise ConvaiOperationError("create", _subject(inputs.model_group_name), exc) from None
        return CreateResult(inputs.model_group_name, outputs)

    @staticmethod
    def _register(convai: Operation, inputs: PrivateModelInputs) -> dict[str, Any]:
        try:
            registered = convai.register(inputs.register_request())
        except ConflictError as conflict:
            # A model of this name that was there before this create may be another stack's:
            # never take it silently.
            raise ConvaiOperationError(
                "create", _subject(inputs.model_group_name), f"{conflict} {INTERRUPTED_HINT}"
            ) from None
        log.info("registered Convai private model %s", inputs.model_group_name)
        if registered.model is None:
            # Convai answered that it registered the model: failing now would leave it in Convai
            # and not in state. What Convai computes waits for the next refresh.
            log.warning(
                "registered %s, but %s; `pulumi refresh` reads its category and created_at",
                inputs.model_group_name,
                registered.unlisted_because,
            )
        return inputs.outputs(registered.model)

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
        )
        if not report.ok:
            raise ConvaiOperationError(
                operation,
                _subject(inputs.model_group_name),
                f"{report.summary()} Nothing was sent to Convai. Fix the endpoint, or set "
                "verify_endpoint=False to register it unchecked.",
            )

    # read -----------------------------------------------------------------------------------

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        runtime = self._runtime()
        try:
            live = runtime.operation().listed(id_)
        except ConvaiError as exc:
            raise ConvaiOperationError("read", _subject(id_), exc) from None
        if live is None:
            log.info("Convai private model %s is gone; dropping it from state", id_)
            return ReadResult("", {})
        outputs = _live_outputs(live, props)
        inputs = {k: v for k, v in outputs.items() if k not in COMPUTED_FIELDS}
        return ReadResult(id_, outputs, inputs)

    # update ---------------------------------------------------------------------------------

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = PrivateModelInputs.model_validate(_declared(news))
        runtime = self._runtime()
        if inputs.verify_endpoint and any(
            differs(olds.get(f), news.get(f)) for f in ENDPOINT_FIELDS
        ):
            self._verify_endpoint(runtime, "update", inputs)
        try:
            self._send_update(runtime.operation(), id_, olds, news)
        except ConvaiError as exc:
            raise ConvaiOperationError("update", _subject(id_), exc) from None
        outputs = inputs.model_dump()
        for field in (*UPDATE_FIELDS, *COMPUTED_FIELDS):
            if outputs.get(field) is None:
                outputs[field] = olds.get(field)
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

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        runtime = self._runtime()
        try:
            runtime.operation().deregister(id_)
        except NotFoundError:
            log.info("Convai private model %s was already gone", id_)
        except ConvaiError as exc:
            raise ConvaiOperationError("delete", _subject(id_), exc) from None


def _subject(model_group_name: str) -> str:
    return f"Convai private model '{model_group_name}'"


def _declared(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k in INPUT_FIELDS and v is not None}


def _declared_updates(inputs: PrivateModelInputs) -> dict[str, Any]:
    return {
        f: getattr(inputs, f)
        for f in UPDATE_FIELDS
        if f != "api_key" and getattr(inputs, f) is not None
    }


def _live_outputs(live: PrivateModel, stored: Mapping[str, Any]) -> dict[str, Any]:
    """What refresh records: Convai's view, plus what the API never returns, kept from state."""
    outputs = {k: v for k, v in stored.items() if k in INPUT_FIELDS and k != PROVIDER_KEY}
    outputs.update(live.model_dump(include=set(PrivateModel.model_fields)))
    return outputs

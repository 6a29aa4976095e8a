"""The stack configuration schema: inference endpoints and the Convai models that use them.

Read by the Pulumi program (from the runtime's config) and by the operator CLI (from
`stacks/Pulumi.<stack>.yaml`), through the same reader (`project_values`) and pydantic models, so
both refuse the same mistakes with the same words: the config path, what is wrong, and the fix.

Here the schema's top (`StackConfig`, its models, `project_values`, `parse_stack_config`); its
parts are modules of one concept each: `config_keys` (the keys and exports), `external_endpoint`
and `vllm_endpoint` (the two kinds of endpoint), `kubernetes_options` (a vLLM endpoint's option
types and models), `stack_files` (where stack files are, and their one reader), `unknown_keys`,
`config_problems` (how problems are told) and `schema_base`. Every name this module held before
the split is still imported from here (`__all__`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import Field, StrictBool, ValidationError, model_validator
from pydantic.fields import FieldInfo

from convai_provider.api.accounts import account_name
from convai_provider.api.builtin_models import (
    BUILTIN_MODEL_CODES,
    BUILTIN_MODELS,
    DEFAULT_FALLBACK_MODEL,
)
from convai_provider.guards.documents import DocumentError, TooDeepError, parse_json
from convai_provider.guards.validation import field_problems
from convai_provider.resources.field_docs import shared_field
from convai_provider.resources.fields import AccountAlias, Name
from convai_provider.resources.private_model_inputs import ENDPOINT_FIELDS, PrivateModelInputs
from convai_stack.config_keys import (
    DEV_STACK,
    ENDPOINT_KEYS_EXPORT,
    ENDPOINTS_KEY,
    EXTRA_BUILTINS_KEY,
    FALLBACK_KEY,
    MODELS_EXPORT,
    MODELS_KEY,
    PROJECT,
    PROTECT_KEY,
    PROVIDER_NAMESPACE,
    REQUIRE_DIGEST_KEY,
    SECRET_KEY_FIELDS,
    ConfigKey,
)
from convai_stack.config_problems import StackConfigError, config_path, joined
from convai_stack.external_endpoint import ExternalEndpoint
from convai_stack.kubernetes_options import (
    EGRESS_DENIED,
    GPU_TOLERATIONS,
    HF_HUB_FQDNS,
    Autoscaling,
    DnsLabel,
    FqdnPattern,
    GatewayDataplane,
    GatewayRef,
    Hostname,
    IpNetwork,
    LabelMap,
    MetricsScrape,
    Quantity,
    Toleration,
)
from convai_stack.schema_base import StrictModel
from convai_stack.stack_files import (
    STACK_CONFIG_DIR,
    read_stack_document,
    read_stack_file,
    stack_file,
)
from convai_stack.unknown_keys import StackKeys, known_keys, unknown_key_problems
from convai_stack.vllm_endpoint import (
    API_PATH,
    COMMON_GPU_COUNTS,
    MAX_GPUS_PER_NODE,
    PLACEHOLDER,
    REVISION_PATTERN,
    VLLM_IMAGE,
    VLLM_IMAGE_TAG,
    ImageDigest,
    VllmEndpoint,
    VllmName,
    digest_hint,
    published_base_url,
    vllm_namespace,
)

Endpoint = Annotated[ExternalEndpoint | VllmEndpoint, Field(discriminator="kind")]


class ModelDeclaration(StrictModel):
    """One Convai private model (a ConvaiPrivateModel): its `base_url`, `model_name` and `api_key`
    come from its endpoint's outputs, every other input of the resource is declared here, with the
    resource's default and doc."""

    model_group_name: Name = shared_field(PrivateModelInputs, "model_group_name")
    endpoint: DnsLabel
    """The `name` of the endpoint (of `endpoints`) that serves the model."""
    display_name: Name | None = shared_field(PrivateModelInputs, "display_name")
    is_uncensored: StrictBool = shared_field(PrivateModelInputs, "is_uncensored")
    verify_endpoint: StrictBool = shared_field(PrivateModelInputs, "verify_endpoint")
    adopt_existing: StrictBool = shared_field(PrivateModelInputs, "adopt_existing")
    protect: StrictBool | None = None
    """Protect the model from deletion (Pulumi's `protect`); left out, the stack's
    `protectModels`."""
    characters: list[Name] = Field(default_factory=list)
    """Convai character IDs that use this model; they are moved to the fallback model before the
    model is ever deregistered."""
    account: AccountAlias | None = shared_field(PrivateModelInputs, "account")

    def resource_inputs(self) -> dict[str, Any]:
        """The inputs of its ConvaiPrivateModel declared here (the endpoint gives the rest)."""
        return {name: getattr(self, name) for name in DECLARED_INPUTS}


DECLARED_INPUTS = tuple(f for f in PrivateModelInputs.model_fields if f not in ENDPOINT_FIELDS)
"""The private model's inputs a stack file declares on the model: all but its endpoint's."""


class StackConfig(StrictModel):
    """The settings of a stack, each a key under `convai-models:` in its stack file."""

    endpoints: list[Endpoint] = Field(default_factory=list)
    """Inference endpoints, each `kind: external` or `kind: vllm`."""
    models: list[ModelDeclaration] = Field(default_factory=list)
    """The Convai models, each referring to an endpoint by name."""
    protectModels: StrictBool = False  # noqa: N815 - the config key
    """Protect every model of the stack (a model's `protect` overrides it)."""
    fallbackModel: Name = DEFAULT_FALLBACK_MODEL  # noqa: N815 - the config key
    """The model characters move to before their model goes away: a built-in Convai code (listed
    in convai_provider/api/builtin_models.py and docs/resources.md, "Characters bound to models"),
    a code named in extraBuiltinModels, or a model_group_name of this stack without characters of
    its own (and in the characters' account); anything else is refused, since a typo would leave
    characters on a model that does not exist."""
    extraBuiltinModels: list[Name] = Field(default_factory=list)  # noqa: N815 - the config key
    """Built-in Convai codes added after convai_provider/api/builtin_models.py was last updated,
    accepted as fallbackModel."""
    requireImageDigest: StrictBool = False  # noqa: N815 - the config key
    """Every vllm endpoint must set image_digest: a tag-only image is refused at preview, since a
    tag can be moved to other bits (on in prod; docs/vllm.md, "Image digests")."""

    @model_validator(mode="after")
    def _references_are_consistent(self) -> StackConfig:
        problems: list[tuple[str, str]] = []
        problems += _duplicates([e.name for e in self.endpoints], ENDPOINTS_KEY, "name")
        # Two Ingresses and two Certificates for one host: the controller admits only one.
        problems += _duplicates(
            [e.host if isinstance(e, VllmEndpoint) else None for e in self.endpoints],
            ENDPOINTS_KEY,
            "host",
        )
        problems += _duplicates(
            [m.model_group_name for m in self.models], MODELS_KEY, "model_group_name"
        )
        names = [m.display_name for m in self.models]
        problems += _duplicates(names, MODELS_KEY, "display_name")
        problems += _duplicates(
            [c for m in self.models for c in m.characters], MODELS_KEY, "characters"
        )
        declared = {e.name for e in self.endpoints}
        for index, model in enumerate(self.models):
            if model.endpoint not in declared:
                known = ", ".join(sorted(repr(n) for n in declared)) or "none"
                problems.append(
                    (
                        f"{MODELS_KEY}[{index}].endpoint",
                        f"'{model.endpoint}' is not a declared endpoint (declared: {known}); "
                        f"add it to {PROJECT}:{ENDPOINTS_KEY} or fix the reference",
                    )
                )
        problems += self._fallback_problems()
        problems += self._digest_problems()
        if problems:
            raise ValueError(joined(problems))
        return self

    def _fallback_problems(self) -> list[tuple[str, str]]:
        """A fallback that does not exist strands characters: the outage bindings prevent."""
        fallback = self.fallbackModel
        own = {m.model_group_name: m for m in self.models}
        known = [*BUILTIN_MODEL_CODES, *self.extraBuiltinModels, *own]
        if fallback in BUILTIN_MODELS or fallback in self.extraBuiltinModels:
            return []
        if fallback in own:
            if own[fallback].characters:
                return [
                    (
                        FALLBACK_KEY,
                        f"'{fallback}' has characters of its own, which would fall back to it "
                        "while it goes away; choose a built-in Convai model such as "
                        f"{DEFAULT_FALLBACK_MODEL} or a model without characters",
                    )
                ]
            return self._fallback_account_problems(own[fallback])
        close = difflib.get_close_matches(fallback, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return [
            (
                FALLBACK_KEY,
                f"'{fallback}' is neither a built-in Convai model nor a model of this stack; "
                f"{hint}use one of {', '.join(BUILTIN_MODEL_CODES)}, a model_group_name of "
                f"{PROJECT}:{MODELS_KEY}, or name a code Convai added since in "
                f"{PROJECT}:{EXTRA_BUILTINS_KEY}",
            )
        ]

    def _digest_problems(self) -> list[tuple[str, str]]:
        if not self.requireImageDigest:
            return []
        return [
            (
                f"{ENDPOINTS_KEY}[{index}].image_digest",
                f"{REQUIRE_DIGEST_KEY} is on and {endpoint.tagged_image} is named by its tag "
                f"only, which can be moved to other bits; {digest_hint(endpoint.tagged_image)}",
            )
            for index, endpoint in enumerate(self.endpoints)
            if isinstance(endpoint, VllmEndpoint) and endpoint.image_digest is None
        ]

    def placeholder_problems(self) -> list[str]:
        """One line per value the committed file leaves to its operator: accepted by the schema
        (the operator commands read the file), refused before anything is deployed."""
        problems = [
            problem
            for index, endpoint in enumerate(self.endpoints)
            if isinstance(endpoint, VllmEndpoint)
            for problem in endpoint.placeholder_problems(f"{ENDPOINTS_KEY}[{index}]")
        ]
        return joined(problems).splitlines()

    def _fallback_account_problems(self, fallback: ModelDeclaration) -> list[tuple[str, str]]:
        """A character can only fall back to a model of its own account."""
        elsewhere = sorted(
            m.model_group_name
            for m in self.models
            if m.characters and m.account != fallback.account
        )
        if not elsewhere:
            return []
        return [
            (
                FALLBACK_KEY,
                f"'{fallback.model_group_name}' is in {account_name(fallback.account)}, but the "
                "characters of "
                f"{', '.join(elsewhere)} live in another account and can only fall back to a "
                f"model of theirs; choose a built-in Convai model such as {DEFAULT_FALLBACK_MODEL}",
            )
        ]

    def endpoint(self, name: str) -> ExternalEndpoint | VllmEndpoint:
        return next(e for e in self.endpoints if e.name == name)

    def protected(self, model: ModelDeclaration) -> bool:
        return self.protectModels if model.protect is None else model.protect


def _duplicates(values: list[Any], key: str, field: str) -> list[tuple[str, str]]:
    seen: dict[Any, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in seen:
            problems.append(
                (
                    f"{key}[{index}].{field}",
                    f"{value!r} is already used by {key}[{seen[value]}]; each {field} must be "
                    "unique within a stack",
                )
            )
        else:
            seen[value] = index
    return problems


STACK_KEYS = tuple(StackConfig.model_fields)
"""The settings of a stack, each a key under `convai-models:`: the fields of StackConfig (what
reads them looks at the schema itself, so a field added there is read with no other edit)."""


def project_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """This project's settings in `config` (namespaced keys: a stack file's `config:`, or the
    runtime's), prefix removed: the one reader the program and the commands share. The runtime
    hands objects and booleans to programs as JSON text, which is decoded, except for a setting
    the schema takes as text (a model name such as `null` stays a name)."""
    settings = StackConfig.model_fields
    values: dict[str, Any] = {}
    for key, raw in config.items():
        namespace, _, name = key.partition(":")
        if namespace != PROJECT or name not in settings:
            continue
        values[name] = raw
        if isinstance(raw, str) and not _takes_text(settings[name]):
            values[name] = _decoded(key, raw)
    return values


def _takes_text(field: FieldInfo) -> bool:
    annotation = field.annotation
    is_union = get_origin(annotation) in (Union, UnionType)
    return annotation is str or (is_union and str in get_args(annotation))


def _decoded(key: str, raw: str) -> Any:
    try:
        return parse_json(raw)
    except TooDeepError as exc:
        raise StackConfigError(f"{key}: {exc}; a stack's lists nest a few levels") from None
    except DocumentError:
        return raw  # not JSON: the schema says what it must be


def parse_stack_config(
    values: Mapping[str, Any],
    source: str = "stack configuration",
    keys: Iterable[str] = (),
    where: StackKeys | None = None,
) -> StackConfig:
    """Validate the project's config values (keys without the `convai-models:` prefix), and
    `keys`, every config key the stack sets, namespaced: all problems are reported at once."""
    settings = StackConfig.model_fields
    lines = unknown_key_problems(keys, values, where, settings=settings)
    try:
        stack = StackConfig.model_validate({k: v for k, v in values.items() if k in settings})
    except ValidationError as exc:
        for path, reason in field_problems(exc, StackConfig):
            if path in ("", "__root__") or reason.startswith(PROJECT):
                lines.append(reason)
            else:
                lines.append(f"{PROJECT}:{config_path(path)}: {reason}")
    if lines:
        raise StackConfigError(f"Invalid {source}:\n" + "\n".join(lines))
    return stack


__all__ = [
    "API_PATH",
    "COMMON_GPU_COUNTS",
    "DECLARED_INPUTS",
    "DEV_STACK",
    "EGRESS_DENIED",
    "ENDPOINTS_KEY",
    "ENDPOINT_KEYS_EXPORT",
    "EXTRA_BUILTINS_KEY",
    "FALLBACK_KEY",
    "GPU_TOLERATIONS",
    "HF_HUB_FQDNS",
    "MAX_GPUS_PER_NODE",
    "MODELS_EXPORT",
    "MODELS_KEY",
    "PLACEHOLDER",
    "PROJECT",
    "PROTECT_KEY",
    "PROVIDER_NAMESPACE",
    "REQUIRE_DIGEST_KEY",
    "REVISION_PATTERN",
    "SECRET_KEY_FIELDS",
    "STACK_CONFIG_DIR",
    "STACK_KEYS",
    "VLLM_IMAGE",
    "VLLM_IMAGE_TAG",
    "Autoscaling",
    "ConfigKey",
    "DnsLabel",
    "Endpoint",
    "ExternalEndpoint",
    "FqdnPattern",
    "GatewayDataplane",
    "GatewayRef",
    "Hostname",
    "ImageDigest",
    "IpNetwork",
    "LabelMap",
    "MetricsScrape",
    "ModelDeclaration",
    "Quantity",
    "StackConfig",
    "StackConfigError",
    "StackKeys",
    "Toleration",
    "VllmEndpoint",
    "VllmName",
    "known_keys",
    "parse_stack_config",
    "project_values",
    "published_base_url",
    "read_stack_document",
    "read_stack_file",
    "stack_file",
    "unknown_key_problems",
    "vllm_namespace",
]
"""Every name importable from here before the schema was split into modules of one concept
each (and the rules written once since): the program, the operator commands and the tests
import them from here."""

"""The pydantic schemas are the one source of the resources' fields: every place a field is
written again (the Args class, the keyword signature, the outputs, the stack file's model
declaration) matches its schema, and a field missing in one of them fails a test naming it."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from convai_provider.resources import character_model, private_model, private_model_inputs
from convai_provider.resources.field_docs import (
    is_required,
    replacing_fields,
    shared_field,
    what_a_change_does,
)
from convai_stack.stack_config import DECLARED_INPUTS, ModelDeclaration


@dataclass(frozen=True)
class ResourceSchema:
    """A resource and the schema its Args, keywords and outputs follow."""

    schema: type[BaseModel]
    args: type
    resource: type
    computed: tuple[str, ...]
    computed_docs: dict[str, str]
    other_keywords: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.resource.__name__


RESOURCES = [
    ResourceSchema(
        private_model_inputs.PrivateModelInputs,
        private_model.ConvaiPrivateModelArgs,
        private_model.ConvaiPrivateModel,
        private_model_inputs.COMPUTED_FIELDS,
        private_model_inputs.COMPUTED_DOCS,
    ),
    ResourceSchema(
        character_model.CharacterModelInputs,
        character_model.ConvaiCharacterModelArgs,
        character_model.ConvaiCharacterModel,
        character_model.COMPUTED_FIELDS,
        character_model.COMPUTED_DOCS,
        other_keywords=("model",),
    ),
]


def plain_type(annotation: Any) -> Any:
    """`Name | None` -> str: the Python type a field holds, without validators or None."""
    if get_origin(annotation) is Annotated:
        return plain_type(get_args(annotation)[0])
    if get_origin(annotation) in (typing.Union, types.UnionType):
        members = [plain_type(a) for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007
    return annotation


def input_types(resource: ResourceSchema) -> dict[str, str]:
    """Each input's type as the resource's annotations write it: `str`, `bool`."""
    return {n: plain_type(f.annotation).__name__ for n, f in resource.schema.model_fields.items()}


def missing_and_extra(written: list[str], schema: list[str], where: str) -> list[str]:
    problems = [f"{where} lacks {name}" for name in schema if name not in written]
    problems += [
        f"{where} has {name}, which the schema has not" for name in written if name not in schema
    ]
    if not problems and written != schema:
        problems.append(f"{where} lists the fields in another order than the schema: {written}")
    return problems


@pytest.mark.parametrize("resource", RESOURCES, ids=str)
def test_the_args_class_has_every_input_typed_as_the_schema(resource: ResourceSchema) -> None:
    written = [f.name for f in fields(resource.args)]
    where = f"{resource.args.__name__} ({resource.args.__module__})"
    assert missing_and_extra(written, list(resource.schema.model_fields), where) == []
    written_types = dict(resource.args.__annotations__)
    expected = {
        name: f"pulumi.Input[{kind}]"
        if resource.schema.model_fields[name].is_required()
        else f"pulumi.Input[{kind}] | None"
        for name, kind in input_types(resource).items()
    }
    wrong = {n: written_types[n] for n in expected if written_types[n] != expected[n]}
    assert wrong == {}, f"{where}: types that are not the schema's, expected {expected}"


@pytest.mark.parametrize("resource", RESOURCES, ids=str)
def test_the_resource_takes_every_input_as_a_keyword(resource: ResourceSchema) -> None:
    init = resource.resource.__init__  # type: ignore[misc]
    keywords = [
        p.name
        for p in inspect.signature(init).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in resource.other_keywords
    ]
    where = f"{resource}.__init__'s keyword arguments"
    assert missing_and_extra(keywords, list(resource.schema.model_fields), where) == []
    parameters = inspect.signature(init).parameters
    wrong = {
        name: parameters[name].annotation
        for name, kind in input_types(resource).items()
        if parameters[name].annotation != f"pulumi.Input[{kind}] | None"
    }
    assert wrong == {}, f"{where}: each is `pulumi.Input[<the schema's type>] | None = None`"


def declared_outputs(resource: type) -> dict[str, str]:
    """The outputs a resource class declares for type checkers (under `if TYPE_CHECKING:`, which
    never runs): name -> annotation, read from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(resource)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    for node in body.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                ast.unparse(a.target): ast.unparse(a.annotation)
                for a in node.body
                if isinstance(a, ast.AnnAssign)
            }
    return {}


@pytest.mark.parametrize("resource", RESOURCES, ids=str)
def test_the_resource_declares_every_input_and_computed_field_as_an_output(
    resource: ResourceSchema,
) -> None:
    outputs = declared_outputs(resource.resource)
    where = f"{resource}'s outputs (under `if TYPE_CHECKING:`)"
    schema = [*resource.schema.model_fields, *resource.computed]
    assert missing_and_extra(list(outputs), schema, where) == []
    wrong = {}
    for name, kind in input_types(resource).items():
        field = resource.schema.model_fields[name]
        holds = f"{kind} | None" if not field.is_required() and field.default is None else kind
        if outputs[name] != f"pulumi.Output[{holds}]":
            wrong[name] = outputs[name]
    assert wrong == {}, f"{where}: each input is `pulumi.Output[<the schema's type>]`"


@pytest.mark.parametrize("resource", RESOURCES, ids=str)
def test_every_input_and_output_is_documented(resource: ResourceSchema) -> None:
    undocumented = [n for n, f in resource.schema.model_fields.items() if not f.description]
    assert undocumented == [], f"{resource.schema.__name__}: give each a docstring"
    assert list(resource.computed_docs) == list(resource.computed)


def test_what_replaces_is_read_from_the_schema() -> None:
    assert private_model_inputs.REPLACE_FIELDS == ("model_group_name", "model_name")
    assert replacing_fields(private_model_inputs.PrivateModelInputs) == (
        "model_group_name",
        "model_name",
        "account",
    )
    assert character_model.REPLACE_FIELDS == ("char_id", "model_group_name")


def test_the_stack_file_declares_every_input_its_endpoint_does_not_give() -> None:
    schema = private_model_inputs.PrivateModelInputs.model_fields
    from_endpoint = private_model_inputs.ENDPOINT_FIELDS
    declared = ModelDeclaration.model_fields
    missing = [n for n in schema if n not in from_endpoint and n not in declared]
    assert missing == [], (
        "convai_stack.stack_config.ModelDeclaration lacks these inputs of the private model: "
        "declare each as `NAME: TYPE = shared_field(PrivateModelInputs, NAME)`"
    )
    assert set(DECLARED_INPUTS) == set(schema) - set(from_endpoint)
    assert not set(from_endpoint) & set(declared), "the endpoint gives these: not the model"


@pytest.mark.parametrize("name", DECLARED_INPUTS)
def test_the_stack_file_declares_each_input_as_the_resource_does(name: str) -> None:
    ours = ModelDeclaration.model_fields[name]
    resource = private_model_inputs.PrivateModelInputs.model_fields[name]
    assert (ours.annotation, ours.metadata) == (resource.annotation, resource.metadata), (
        f"ModelDeclaration.{name} has another type than PrivateModelInputs.{name}"
    )
    assert (ours.default, ours.description, ours.json_schema_extra) == (
        resource.default,
        resource.description,
        resource.json_schema_extra,
    ), f"ModelDeclaration.{name}: declare it `= shared_field(PrivateModelInputs, {name!r})`"


def test_a_declared_model_gives_its_resource_every_declared_input() -> None:
    model = ModelDeclaration.model_validate(
        {"model_group_name": "g", "endpoint": "e", "display_name": "G", "account": "partner"}
    )
    assert model.resource_inputs() == {
        "model_group_name": "g",
        "is_uncensored": False,
        "display_name": "G",
        "adopt_existing": False,
        "verify_endpoint": True,
        "account": "partner",
    }


def test_a_shared_field_keeps_a_default_factory_and_requiredness() -> None:
    class Source(BaseModel):
        listed: list[str] = []
        needed: str

    class Copy(BaseModel):
        listed: list[str] = shared_field(Source, "listed")
        needed: str = shared_field(Source, "needed")

    assert Copy.model_fields["needed"].is_required()
    assert is_required(Copy.model_fields["needed"])
    assert Copy(needed="x").listed == []


def _changed(value: object) -> object:
    """Another value of the same kind: what a user's edit of the field makes of it."""
    if isinstance(value, bool):
        return not value
    return f"{value}-changed"


BASES: dict[type[BaseModel], dict[str, Any]] = {
    private_model_inputs.PrivateModelInputs: {
        "model_group_name": "g",
        "model_name": "m",
        "api_key": "sk-1",
        "display_name": "D",
        "base_url": "https://llm.example.com/v1",
        "is_uncensored": False,
        "verify_endpoint": False,
    },
    character_model.CharacterModelInputs: {
        "char_id": "c",
        "model_group_name": "g",
        "fallback_model_group_name": "gpt-4o-mini",
    },
}
PROVIDERS: dict[type[BaseModel], Any] = {
    private_model_inputs.PrivateModelInputs: private_model.PrivateModelProvider,
    character_model.CharacterModelInputs: character_model.CharacterModelProvider,
}


@pytest.mark.parametrize(
    ("schema", "name"),
    [
        (schema, name)
        for schema in BASES
        for name, field in schema.model_fields.items()
        if what_a_change_does(field) is None
    ],
)
def test_a_field_documented_as_updated_in_place_is_updated_in_place(
    schema: type[BaseModel], name: str
) -> None:
    """docs/reference.md says "in place" for a field without a change note: the provider's diff
    must then plan an update, not nothing (the state would keep the old value for ever) and not a
    replacement."""
    olds = BASES[schema]
    assert name in olds, f"give {name} a value in BASES to check what its change does"
    news = {**olds, name: _changed(olds[name])}
    diff = PROVIDERS[schema]().diff("id", olds, news)
    assert diff.changes is True and diff.replaces == [], (
        f"{schema.__name__}.{name} has no on_change note, so docs/reference.md says a change "
        "updates in place; the provider's diff does not: give the field an on_change note, or "
        "make the provider update it"
    )

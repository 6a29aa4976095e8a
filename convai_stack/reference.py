"""docs/reference.md's tables, generated from the schemas: `python -m convai_stack.reference`.

Every input of the resources and every setting of a stack file is a field of a pydantic model,
documented where it is declared (its docstring, its `on_change` note). The page keeps its prose;
each table between `<!-- generated: NAME -->` and `<!-- end generated -->` is written again from
the model NAME, so a field added to a model shows up in the page, documented, at the next run
(tests/test_reference.py fails until then).
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from convai_provider.resources.character_model import COMPUTED_DOCS as BINDING_COMPUTED_DOCS
from convai_provider.resources.character_model import CharacterModelInputs
from convai_provider.resources.field_docs import is_required, what_a_change_does
from convai_provider.resources.private_model_inputs import COMPUTED_DOCS, PrivateModelInputs
from convai_stack.stack_config import (
    PROJECT,
    Autoscaling,
    ExternalEndpoint,
    GatewayDataplane,
    GatewayRef,
    MetricsScrape,
    ModelDeclaration,
    StackConfig,
    Toleration,
    VllmEndpoint,
)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
COMMAND = "python -m convai_stack.reference"

IN_PLACE = "in place"


@dataclass(frozen=True)
class Table:
    """One generated table: the rows of a model's fields, and what its first column names."""

    model: type[BaseModel]
    column: str
    key: Callable[[str], str] = lambda name: name
    outputs: dict[str, str] | None = None
    """For a table of a resource's outputs: those that are no input, name -> doc."""


TABLES = {
    "ConvaiPrivateModel": Table(PrivateModelInputs, "input"),
    "ConvaiPrivateModel outputs": Table(PrivateModelInputs, "output", outputs=COMPUTED_DOCS),
    "ConvaiCharacterModel": Table(CharacterModelInputs, "input"),
    "ConvaiCharacterModel outputs": Table(
        CharacterModelInputs, "output", outputs=BINDING_COMPUTED_DOCS
    ),
    "StackConfig": Table(StackConfig, "key", key=lambda name: f"{PROJECT}:{name}"),
    "ExternalEndpoint": Table(ExternalEndpoint, "field"),
    "VllmEndpoint": Table(VllmEndpoint, "field"),
    "ModelDeclaration": Table(ModelDeclaration, "field"),
    "Toleration": Table(Toleration, "field"),
    "MetricsScrape": Table(MetricsScrape, "field"),
    "Autoscaling": Table(Autoscaling, "field"),
    "GatewayRef": Table(GatewayRef, "field"),
    "GatewayDataplane": Table(GatewayDataplane, "field"),
}
"""Every table of the page, by the name its markers carry."""

ANCHORS: dict[type[BaseModel], str] = {
    ExternalEndpoint: "external-endpoint",
    VllmEndpoint: "vllm-endpoint",
    ModelDeclaration: "model",
    Toleration: "toleration",
    MetricsScrape: "metrics",
    Autoscaling: "autoscaling",
    GatewayRef: "gateway",
    GatewayDataplane: "gatewaydataplane",
}
"""Where the page documents a nested model, for the type column's links."""

_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


class ReferenceError(Exception):
    """The page cannot be generated: a marker is missing or names no table."""


def type_of(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's type in words, with the bounds its metadata sets."""
    text = _type_words(annotation)
    bounds = [bound for bound in map(_bound, metadata or []) if bound]
    return ", ".join([text, *bounds])


def _type_words(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_of(args[0], [*args[1:]])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return " or ".join(_type_words(a) for a in members)
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_words(args[0])}"
    if origin is dict:
        return f"map of {_type_words(args[0])} to {_type_words(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{ANCHORS[annotation]}](#{ANCHORS[annotation]})"
    names = {str: "string", bool: "boolean", int: "integer", float: "number"}
    return names[annotation]


_BOUNDS = (("ge", "at least"), ("gt", "more than"), ("le", "at most"), ("lt", "less than"))
"""The bounds pydantic's `Field(ge=..., ...)` puts in a field's metadata (annotated-types')."""


def _bound(metadata: Any) -> str:
    for attribute, words in _BOUNDS:
        value = getattr(metadata, attribute, None)
        if isinstance(value, int | float):
            return f"{words} {value}"
    return ""


def default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return ""
    else:
        value = field.default
    if value is None:
        return "none"
    return f"`{_flow_yaml(value)}`"


def _flow_yaml(value: Any) -> str:
    """A value as a stack file writes it, on one line: `false`, `[]`, `{k8s-app: kube-dns}`."""
    plain = _plain(value)
    if isinstance(plain, str):
        return plain
    text = yaml.safe_dump(plain, default_flow_style=True, sort_keys=False, width=1_000_000)
    return text.strip().removesuffix("...").strip()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def table(spec: Table) -> str:
    return _outputs_table(spec) if spec.outputs is not None else _inputs_table(spec)


def _inputs_table(spec: Table) -> str:
    undocumented = [n for n, f in spec.model.model_fields.items() if not f.description]
    if undocumented:
        raise ReferenceError(
            f"{spec.model.__module__}.{spec.model.__name__}: document "
            f"{', '.join(undocumented)} with a docstring under the field"
        )
    lines = [
        f"| {spec.column} | type | required | default | on change | description |",
        "|---|---|---|---|---|---|",
    ]
    for name, field in spec.model.model_fields.items():
        required = is_required(field)
        cells = [
            f"`{spec.key(name)}`",
            type_of(field.annotation, field.metadata),
            "yes" if required else "no",
            "" if required else default_of(field),
            what_a_change_does(field) or IN_PLACE,
            field.description or "",
        ]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _outputs_table(spec: Table) -> str:
    """Every input is an output too (Convai's view after a refresh), then the computed ones."""
    lines = ["| output | type | description |", "|---|---|---|"]
    for name, field in spec.model.model_fields.items():
        doc = "The input: as declared, or as Convai reports it after a refresh."
        lines.append(_row([f"`{name}`", type_of(field.annotation, field.metadata), doc]))
    for name, doc in (spec.outputs or {}).items():
        lines.append(_row([f"`{name}`", "string", doc]))
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |"


def generated(page: str) -> str:
    """The page with each generated table written again from its model."""
    found = [m.group("name") for m in _BLOCK.finditer(page)]
    unknown = [name for name in found if name not in TABLES]
    missing = [name for name in TABLES if name not in found]
    if unknown or missing:
        raise ReferenceError(
            f"{PAGE}: markers name no table ({', '.join(unknown) or 'none'}), or tables have no "
            f"markers ({', '.join(missing) or 'none'}): place `<!-- generated: NAME -->` and "
            "`<!-- end generated -->` where each table goes"
        )
    return _BLOCK.sub(lambda m: m.group(1) + table(TABLES[m.group("name")]) + m.group(4), page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    try:
        fresh = generated(page)
    except ReferenceError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        if fresh != page:
            print(f"{PAGE} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

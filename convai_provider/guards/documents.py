"""Documents from outside the process (replies, stack files, piped outputs), parsed with limits.

Python's parsers recurse once per nesting level: a document of 100,000 `[` is a RecursionError
in the parser or in whatever walks the result next. Here nesting beyond `MAX_DEPTH` is a
`DocumentError` that says so, before anything else sees the document.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
import yaml

MAX_DEPTH = 64
"""Deeper than any document this project reads (a stack file nests five levels)."""

MAX_VALUES = 2_000_000
"""More values than any document this project reads holds (a 10,000-model list: ~100,000).
YAML aliases can make a small file expand to billions; this stops the walk long before."""


class DocumentError(ValueError):
    """A document that could not be read, in words: what is wrong and where."""


class TooDeepError(DocumentError):
    """A document nested deeper than MAX_DEPTH."""


def parse_json(data: str | bytes) -> Any:
    """JSON text as Python values; invalid JSON, or JSON nested deeper than MAX_DEPTH, is a
    `DocumentError`."""
    try:
        # pydantic-core's parser stops at ~200 levels with an error instead of recursing on.
        value = pydantic_core.from_json(data)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise TooDeepError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        raise DocumentError(f"not valid JSON ({exc})") from None
    check_depth(value, "JSON")
    return value


def check_depth(value: Any, kind: str) -> None:
    """Refuse a parsed document whose lists and mappings nest deeper than MAX_DEPTH, or that
    holds more than MAX_VALUES values; walked level by level, without recursion."""
    containers = [value] if isinstance(value, dict | list) else []
    depth = walked = 0
    while containers:
        depth += 1
        if depth > MAX_DEPTH:
            raise TooDeepError(f"{kind} nested deeper than {MAX_DEPTH} levels")
        walked += sum(len(container) for container in containers)
        if walked > MAX_VALUES:
            raise DocumentError(f"{kind} holding more than {MAX_VALUES:,} values")
        containers = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML has it: a 24 MB file takes seconds instead of minutes."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(_Loader):  # type: ignore[valid-type,misc]
    """Safe YAML, where a mapping may not give one key twice (YAML would keep the last one
    silently, so half of what was written would be ignored)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A scalar Python cannot hold (an integer past its 4300-digit limit, a date such as
        2024-13-45) is an error at its line and column, like any other YAML mistake."""
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, _unreadable_scalar(node, exc), node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        first_seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if key in first_seen:
                first = first_seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first}); give each key once",
                    key_node.start_mark,
                )
            first_seen[key] = key_node


def _unreadable_scalar(node: yaml.Node, exc: ValueError) -> str:
    value = node.value if isinstance(node.value, str) else ""
    if "integer string conversion" in str(exc):
        return f"a number of {len(value)} digits, more than any setting holds"
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{shown!r} cannot be read ({exc})"


def load_yaml(text: str, source: str) -> Any:
    """A YAML document (safe types only); any problem is a one-line `DocumentError` that starts
    with `source:line:column`."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        raise DocumentError(_one_line(exc, source)) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the pure-Python loader, where libyaml is missing
        raise TooDeepError(f"{source}: YAML nested deeper than {MAX_DEPTH} levels") from None
    try:
        check_depth(document, "YAML")
    except DocumentError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    return document


def _one_line(exc: yaml.MarkedYAMLError, source: str) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = " ".join(str(exc.problem or "").split())
    context = " ".join(str(exc.context or "").split())
    return f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")

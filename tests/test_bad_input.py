"""Generated bad input: check() and the stack schema answer with field errors, never a crash."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi.output import Unknown

from convai_provider.resources.character_model import CharacterModelInputs, CharacterModelProvider
from convai_provider.resources.private_model import (
    INPUT_FIELDS,
    PrivateModelInputs,
    PrivateModelProvider,
)
from convai_stack.stack_config import (
    StackConfigError,
    parse_stack_config,
    project_values,
)
from testkit.stacks import load_stack_file

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["", " ", "http://", "https://x/v1", "ftp://x", "llama", "true", "\x00"]),
    st.builds(Unknown),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def inputs_for(fields: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from([*fields, "__provider", "category", "surprise"])
    return st.dictionaries(keys, values, max_size=len(fields) + 2)


def assert_answered(result: Any, news: dict[str, Any], schema: type[Any]) -> None:
    for failure in result.failures:
        assert failure.property.split(".")[0] in {*news, *schema.model_fields}
        assert failure.reason.startswith(failure.property)
        assert "Traceback" not in failure.reason
    if not result.failures:
        known = {k: v for k, v in result.inputs.items() if not isinstance(v, Unknown)}
        unknown = {k for k, v in result.inputs.items() if isinstance(v, Unknown)}
        if not unknown:
            schema.model_validate(known)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs_for(INPUT_FIELDS))
def test_private_model_check_never_crashes(news: dict[str, Any]) -> None:
    result = PrivateModelProvider().check({}, news)
    assert_answered(result, news, PrivateModelInputs)


@settings(max_examples=500, deadline=None)
@given(inputs_for(tuple(CharacterModelInputs.model_fields)))
def test_character_binding_check_never_crashes(news: dict[str, Any]) -> None:
    result = CharacterModelProvider().check({}, news)
    assert_answered(result, news, CharacterModelInputs)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "endpoints": st.lists(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "name",
                            "kind",
                            "base_url",
                            "model_name",
                            "api_key_config",
                            "host",
                            "model",
                            "served_model_name",
                            "gpus",
                            "oops",
                        ]
                    ),
                    values,
                    max_size=7,
                ),
                max_size=3,
            ),
            "models": st.lists(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "model_group_name",
                            "endpoint",
                            "display_name",
                            "characters",
                            "protect",
                            "x",
                        ]
                    ),
                    values,
                    max_size=5,
                ),
                max_size=3,
            ),
            "protectModels": values,
            "fallbackModel": values,
        },
    )
)
def test_stack_schema_answers_every_config_with_a_clear_error_or_a_stack(
    config: dict[str, Any],
) -> None:
    try:
        parse_stack_config(config)
    except StackConfigError as exc:
        lines = str(exc).splitlines()
        assert lines[0].startswith("Invalid stack configuration")
        assert all(line.startswith("convai-models:") for line in lines[1:]), lines


MALFORMED_FILES = {
    "not yaml": "config: [unclosed",
    "a list": "- config",
    "config is a list": "config: [1, 2]",
    "endpoints a string": "config:\n  convai-models:endpoints: llama",
    "models a number": "config:\n  convai-models:models: 3",
    "tabs": "config:\n\tconvai-models:models: []",
    "binary": "\x00\x01",
}


@pytest.mark.parametrize("name", list(MALFORMED_FILES))
def test_malformed_stack_files_are_clear_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(MALFORMED_FILES[name])
    with pytest.raises(StackConfigError) as caught:
        load_stack_file(path)
    assert str(path) in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_as_a_stack_file_is_a_stack_or_a_clear_error(text: str) -> None:
    path = Path(tempfile.gettempdir()) / "convai-models-fuzz" / "Pulumi.fuzz.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    with contextlib.suppress(StackConfigError):
        load_stack_file(path)


def test_a_config_value_of_deeply_nested_json_is_a_clear_error() -> None:
    deep = "[" * 20_000 + "]" * 20_000
    with pytest.raises(StackConfigError, match="convai-models:models: JSON nested deeper"):
        project_values({"convai-models:models": deep})

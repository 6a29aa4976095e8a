"""Generated bad input: check() and the stack schema answer with field errors, never a crash."""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi.output import Unknown

from convai_provider.api.matching import LISTED_FIELDS
from convai_provider.api.wire import PrivateModel
from convai_provider.resources.character_model import CharacterModelInputs, CharacterModelProvider
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.private_model_inputs import INPUT_FIELDS, PrivateModelInputs
from convai_provider.resources.type_tokens import CHARACTER_TYPE_TOKEN, TYPE_TOKEN
from convai_stack.commands.main import main as cli_main
from convai_stack.commands.recovery import RecoveryError, recover_pending_creates
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


HUGE_NUMBERS = {
    "a huge setting": f"config:\n  convai:requestTimeout: {'9' * 5000}\n",
    "a huge field": (
        "config:\n  convai-models:endpoints:\n    - name: a\n      kind: vllm\n"
        f"      gpus: {'1' * 4400}\n"
    ),
    "a date that is none": "config:\n  convai-models:fallbackModel: 2024-13-45\n",
}


@pytest.mark.parametrize("name", list(HUGE_NUMBERS))
def test_a_scalar_python_cannot_hold_is_a_clear_error_at_its_line(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(HUGE_NUMBERS[name])
    with pytest.raises(StackConfigError) as caught:
        load_stack_file(path)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: invalid YAML: ", str(caught.value))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("command", ["audit", "adopt", "health", "list"])
def test_the_commands_meeting_a_huge_number_in_a_stack_file_say_one_line(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", "bad-input-key-1")
    monkeypatch.setenv("CONVAI_BASE_URL", "http://127.0.0.1:9")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.s.yaml").write_text(HUGE_NUMBERS["a huge setting"])
    assert cli_main([command, "--stack", "s", "--root", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "5000 digits" in err, err


# `recover` on an export of any shape: a Recovery, or one line naming what is wrong ----------

LIVE = {"g": PrivateModel(model_group_name="g", model_name="m")}
leaves = values | st.sampled_from(["g", "m", "creating", TYPE_TOKEN, CHARACTER_TYPE_TOKEN])
model_inputs = st.fixed_dictionaries({}, optional={f: leaves for f in (*LISTED_FIELDS, "api_key")})
exported_resource = st.fixed_dictionaries(
    {},
    optional={
        "urn": st.just("urn:pulumi:s::convai-models::x::m") | leaves,
        "type": st.sampled_from([TYPE_TOKEN, CHARACTER_TYPE_TOKEN]) | leaves,
        "inputs": model_inputs | leaves,
        "custom": leaves,
    },
)
pending_operation = st.fixed_dictionaries(
    {}, optional={"type": st.just("creating") | leaves, "resource": exported_resource | leaves}
)
exports = (
    st.fixed_dictionaries(
        {},
        optional={
            "version": leaves,
            "deployment": st.fixed_dictionaries(
                {},
                optional={
                    "resources": st.lists(leaves, max_size=2) | leaves,
                    "pending_operations": st.lists(pending_operation | leaves, max_size=3) | leaves,
                },
            )
            | leaves,
        },
    )
    | leaves
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports)
def test_recover_answers_any_export_with_a_state_or_one_clear_line(exported: Any) -> None:
    try:
        recovery = recover_pending_creates(exported, LIVE)
    except RecoveryError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    json.dumps(recovery.state, default=repr)  # what `recover` writes for `pulumi stack import`


WRONG_EXPORTS = {
    "pending operations an object": {"deployment": {"pending_operations": {"a": 1}}},
    "inputs a list": {
        "deployment": {
            "pending_operations": [
                {"type": "creating", "resource": {"urn": "u", "type": TYPE_TOKEN, "inputs": []}}
            ]
        }
    },
    "resources null beside a match": {
        "deployment": {
            "resources": None,
            "pending_operations": [{"resource": {"urn": "u::m", "type": TYPE_TOKEN}}],
        }
    },
    "urn a number": {"deployment": {"pending_operations": [{"resource": {"urn": 1, "type": "t"}}]}},
    "a list": [1],
}


@pytest.mark.parametrize("name", list(WRONG_EXPORTS))
def test_recover_meeting_an_export_of_the_wrong_shape_says_one_line_before_asking_convai(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", "bad-input-key-1")
    state = tmp_path / "state.json"
    state.write_text(json.dumps(WRONG_EXPORTS[name]))
    argv = ["recover", "--stack", "s", "--state", str(state), "--base-url", "http://127.0.0.1:9"]
    code = cli_main(argv)
    out, err = capsys.readouterr()
    if name == "resources null beside a match":
        assert "could not reach" in err  # the shape is fine: Convai is asked next
        return
    assert code == 2 and out == ""
    assert err.startswith(f"error: {state}: ") and err.count("\n") == 1, err

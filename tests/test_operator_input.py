"""Bad stack files and bad stack outputs: the operator commands answer with one `error:` line and
exit 2 (or their usual 0 or 1), never a traceback. Generated input included."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards import documents
from convai_stack.commands.main import main
from testkit.convai import CONVAI_KEY

CLOSED = "http://127.0.0.1:9/v1"
"""Nothing listens there: a health check against it fails at once, without any network."""

GOOD_CONFIG: dict[str, Any] = {
    "convai-models:endpoints": [
        {
            "name": "local",
            "kind": "external",
            "base_url": CLOSED,
            "model_name": "llama-3.1-8b",
            "api_key_config": "localVllmApiKey",
        }
    ],
    "convai-models:models": [{"model_group_name": "alpha", "endpoint": "local"}],
}


@contextlib.contextmanager
def convai_env(convai: EmulatorProcess) -> Iterator[None]:
    with mock.patch.dict(os.environ, {"CONVAI_API_KEY": CONVAI_KEY, "CONVAI_BASE_URL": convai.url}):
        yield


def run(*argv: str) -> tuple[int, str, str]:
    """The command in this process, as a user runs it: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse
            code = int(exited.code or 0)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def stack_root(content: bytes | str | None, name: str = "s") -> Iterator[Path]:
    """A project root whose stacks/Pulumi.NAME.yaml holds `content` (None: a directory)."""
    with tempfile.TemporaryDirectory(prefix="convai-operator-input-") as tmp:
        root = Path(tmp)
        (root / "stacks").mkdir()
        path = root / "stacks" / f"Pulumi.{name}.yaml"
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        yield root


def assert_one_error_line(result: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


DEEP_JSON = "[" * 20_000 + "]" * 20_000
BAD_STACK_FILES: dict[str, tuple[bytes | str | None, str]] = {
    "not UTF-8": (b"config:\n  convai-models:fallbackModel: caf\xe9\n", "is not UTF-8 text"),
    "a directory": (None, "is a directory, not a stack file"),
    "deep YAML flow": ("config: " + "[" * 20_000, "nesting depth"),
    "deep YAML blocks": ("".join(" " * i + f"k{i}:\n" for i in range(500)), "nested deeper"),
    "a deep JSON string": (
        yaml.safe_dump({"config": {"convai-models:models": DEEP_JSON}}),
        "JSON nested deeper than 64 levels",
    ),
    "duplicate keys": (
        "config:\n  convai-models:protectModels: true\n  convai-models:protectModels: false\n",
        "Pulumi.s.yaml:3:3: invalid YAML: duplicate key 'convai-models:protectModels' (first "
        "given on line 2)",
    ),
    "a YAML error": ("config:\n  a: [1,\n  b: {", "Pulumi.s.yaml:4:1: invalid YAML: "),
    "aliases expanding": (
        "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "config: {}\n",
        "more than 2,000,000 values",
    ),
    "a number as a key": ("config:\n  1: x\n", "config key 1 is not a string"),
}


@pytest.mark.parametrize("command", ["audit", "adopt", "health"])
@pytest.mark.parametrize("bad", list(BAD_STACK_FILES))
def test_a_bad_stack_file_is_one_error_line(
    convai: EmulatorProcess, command: str, bad: str
) -> None:
    content, fragment = BAD_STACK_FILES[bad]
    with stack_root(content) as root, convai_env(convai):
        assert_one_error_line(run(command, "--stack", "s", "--root", str(root)), fragment)


def test_a_yaml_error_names_file_line_and_column_on_one_line() -> None:
    with stack_root("config:\n  convai-models:models:\n    - model_group_name: [a\n") as root:
        code, _, err = run("health", "--stack", "s", "--root", str(root))
        path = root / "stacks" / "Pulumi.s.yaml"
    assert code == 2 and err.startswith(f"error: {path}:4:1: invalid YAML: ")
    assert err.count("\n") == 1


def test_stack_files_are_read_with_libyaml_where_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml")
    assert issubclass(documents._StrictLoader, yaml.CSafeLoader)


BAD_OUTPUTS: dict[str, tuple[bytes | str | None, str]] = {
    "keys as a string": ('{"endpointKeys": "dev-llama"}', "endpointKeys must map each"),
    "a key that is a number": ('{"endpointKeys": {"alpha": 3}}', "endpointKeys must map each"),
    "a list": ("[]", "must be a JSON object"),
    "deep JSON": (DEEP_JSON, "JSON nested deeper than 64 levels"),
    "not UTF-8": (b'{"endpointKeys": {"alpha": "caf\xe9"}}', "could not read stack outputs"),
    "a directory": (None, "could not read stack outputs"),
    "a non-ASCII key": ('{"endpointKeys": {"alpha": "cl\u00e9"}}', "endpointKeys.alpha"),
}


@pytest.mark.parametrize("bad", list(BAD_OUTPUTS))
def test_bad_stack_outputs_are_one_error_line(bad: str, tmp_path: Path) -> None:
    content, fragment = BAD_OUTPUTS[bad]
    outputs = tmp_path / "outputs.json"
    if content is None:
        outputs.mkdir()
    elif isinstance(content, bytes):
        outputs.write_bytes(content)
    else:
        outputs.write_text(content)
    with stack_root(yaml.safe_dump({"config": GOOD_CONFIG})) as root:
        argv = ["health", "--stack", "s", "--root", str(root), "--outputs", str(outputs)]
        assert_one_error_line(run(*argv, "--timeout", "0"), fragment)


# Generated input ---------------------------------------------------------------------------

KEYS = [
    "name",
    "kind",
    "base_url",
    "model_name",
    "api_key_config",
    "host",
    "model",
    "served_model_name",
    "gpus",
    "model_group_name",
    "endpoint",
    "display_name",
    "characters",
    "protect",
    "adopt_existing",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    # URLs are loopback or junk: a valid stack never sends the health check off this machine.
    st.sampled_from(["external", "vllm", "local", "alpha", CLOSED, "http://127.0.0.1:9", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=12,
)
configs = st.dictionaries(
    st.sampled_from(
        [
            "convai-models:endpoints",
            "convai-models:models",
            "convai-models:protectModels",
            "convai-models:fallbackModel",
            "convai:baseUrl",
            "other:key",
        ]
    ),
    values | values.map(json.dumps),
    max_size=5,
)
documents_ = st.one_of(
    configs.map(lambda config: {"config": config}),
    st.builds(lambda good, extra: {"config": {**good, **extra}}, st.just(GOOD_CONFIG), configs),
    values,
)
stack_files = st.one_of(
    documents_.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.sampled_from(
        ["config: " + "[" * 3000, "config: {a: 1, a: 2}", "\ufeffconfig: {}", "config: &a [*a]"]
    ),
)
outputs_files = st.one_of(
    values.map(lambda value: json.dumps({"endpointKeys": value})),
    values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.just(DEEP_JSON),
)


def assert_answered(result: tuple[int, str, str]) -> None:
    code, out, err = result
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in out + err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_file=stack_files)
def test_any_stack_file_is_answered_with_0_1_or_2_and_no_traceback(
    emulator: EmulatorProcess, stack_file: str | bytes
) -> None:
    with stack_root(stack_file) as root, convai_env(emulator):
        for command in ("audit", "adopt", "health"):
            argv = [command, "--stack", "s", "--root", str(root)]
            assert_answered(run(*argv, *(["--timeout", "0"] if command == "health" else [])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outputs=outputs_files)
def test_any_outputs_input_is_answered_with_0_1_or_2_and_no_traceback(
    outputs: str | bytes,
) -> None:
    with stack_root(yaml.safe_dump({"config": GOOD_CONFIG})) as root:
        path = root / "outputs.json"
        if isinstance(outputs, bytes):
            path.write_bytes(outputs)
        else:
            path.write_text(outputs)
        argv = ["health", "--stack", "s", "--root", str(root), "--outputs", str(path)]
        assert_answered(run(*argv, "--timeout", "0"))

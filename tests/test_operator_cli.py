"""The operator commands against the emulator and the local OpenAI-compatible server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from convai_provider.api.access import ConvaiKeyError
from convai_provider.api.client import ConvaiClient
from convai_provider.api.resolver import Given, resolve_access
from convai_provider.api.wire import RegisterRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.settings import ConvaiSettings
from convai_stack.commands.adoption import config_key_for
from convai_stack.commands.health import env_name_for
from convai_stack.commands.main import ENTRY_POINT, main, program_name
from testkit.convai import CONVAI_KEY
from testkit.openai_server import EndpointBehaviour, serve_endpoint
from testkit.stacks import load_stack_file

ROOT = Path(__file__).resolve().parent.parent

ENDPOINT_KEY = "sk-endpoint"


def write_stack(root: Path, name: str, base_url: str, models: list[dict[str, Any]]) -> None:
    config = {
        "convai-models:endpoints": [
            {
                "name": "local",
                "kind": "external",
                "base_url": base_url,
                "model_name": "llama-3.1-8b",
                "api_key_config": "localVllmApiKey",
            },
        ],
        "convai-models:models": models,
    }
    (root / "stacks").mkdir(exist_ok=True)
    (root / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))


def register(convai: EmulatorProcess, group: str, **fields: Any) -> None:
    request = {
        "model_group_name": group,
        "model_name": "llama-3.1-8b",
        "api_key": "k",
        "is_uncensored": False,
        "base_url": "http://127.0.0.1:8000/v1",
        **fields,
    }
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(RegisterRequest(**request))


@pytest.fixture
def cli(
    convai: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
    monkeypatch.setenv("CONVAI_BASE_URL", convai.url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    write_stack(
        tmp_path,
        "test",
        "http://127.0.0.1:8000/v1",
        [
            {"model_group_name": "alpha", "endpoint": "local", "display_name": "Alpha"},
            {"model_group_name": "beta", "endpoint": "local"},
        ],
    )
    yield tmp_path


# list -------------------------------------------------------------------------------------------


def test_list_prints_a_table(cli: Any, convai: EmulatorProcess) -> None:
    register(convai, "alpha", display_name="Alpha", is_uncensored=True)
    code, out, _ = cli("list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == [
        "GROUP",
        "MODEL",
        "DISPLAY",
        "NAME",
        "BASE",
        "URL",
        "UNCENSORED",
        "CREATED",
    ]
    assert row.split()[:5] == ["alpha", "llama-3.1-8b", "Alpha", "http://127.0.0.1:8000/v1", "yes"]


def test_list_json_shape(cli: Any, convai: EmulatorProcess) -> None:
    register(convai, "alpha")
    code, out, _ = cli("list", "--json")
    body = json.loads(out)
    assert code == 0 and body["count"] == 1
    assert set(body["models"][0]) >= {
        "model_group_name",
        "model_name",
        "display_name",
        "base_url",
        "is_uncensored",
        "category",
        "created_at",
    }


def dev_like_stack(root: Path, convai_url: str) -> None:
    """A stack file as stacks/Pulumi.dev.yaml is: the Convai URL and a key Pulumi encrypted."""
    config = {
        "convai:baseUrl": convai_url,
        "convai:apiKey": {"secure": "v1:ciphertext-the-commands-cannot-read"},
        "convai-models:models": [],
    }
    (root / "stacks").mkdir(exist_ok=True)
    (root / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))


def test_list_takes_the_convai_url_from_the_stack_before_the_environment(
    cli: Any, convai: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(convai, "alpha")
    dev_like_stack(tmp_path, convai.url)
    monkeypatch.setenv("CONVAI_BASE_URL", "http://127.0.0.1:9")  # the provider's order too
    code, out, err = cli("list", "--stack", "dev", "--root", str(tmp_path), "--json")
    assert code == 0, err
    assert [m["model_group_name"] for m in json.loads(out)["models"]] == ["alpha"]


def test_an_explicit_base_url_outranks_the_stack(
    cli: Any, convai: EmulatorProcess, tmp_path: Path
) -> None:
    dev_like_stack(tmp_path, convai.url)
    argv = ("list", "--stack", "dev", "--root", str(tmp_path), "--base-url", "http://x.invalid")
    code, _, err = cli(*argv)
    assert code == 2
    assert err.startswith("error: --base-url 'http://x.invalid' must use https: plain http")


def url_of(stack: dict[str, str], env: dict[str, str], flag: str | None = None) -> tuple[str, str]:
    given = None if flag is None else Given(flag, "--base-url")
    access = resolve_access({"convai:apiKey": "k", **stack}, env, base_url=given)
    return access.base_url, access.url_source


def key_of(
    stack: Mapping[str, object], env: dict[str, str], flag: str | None = None
) -> tuple[str, str]:
    given = None if flag is None else Given(flag, "--api-key")
    access = resolve_access(stack, env, key=given)
    return access.api_key, access.key_source


def test_the_provider_and_the_commands_resolve_the_url_in_one_order() -> None:
    stack = {"convai:baseUrl": "http://127.0.0.1:1"}
    env = {"CONVAI_BASE_URL": "http://127.0.0.1:2"}
    assert url_of(stack, env, flag="http://127.0.0.1:3") == ("http://127.0.0.1:3", "--base-url")
    assert url_of(stack, env) == ("http://127.0.0.1:1", "convai:baseUrl")
    assert url_of({}, env) == ("http://127.0.0.1:2", "CONVAI_BASE_URL")
    assert url_of({}, {}) == ("https://api.convai.com", "convai:baseUrl")
    settings = ConvaiSettings.resolve({"convai:apiKey": "k", **stack}, env)
    assert settings.base_url == "http://127.0.0.1:1"


def test_the_provider_and_the_commands_resolve_the_key_in_one_order() -> None:
    stack = {"convai:apiKey": "stack-key-1"}
    env = {"CONVAI_API_KEY": "env-key-22"}
    assert key_of(stack, env, flag="flag-key-333") == ("flag-key-333", "--api-key")
    assert key_of(stack, env) == ("stack-key-1", "convai:apiKey")
    assert key_of({}, env) == ("env-key-22", "CONVAI_API_KEY")
    assert key_of({"convai:apiKey": {"secure": "v1:cipher"}}, env) == (
        "env-key-22",
        "CONVAI_API_KEY",
    )
    with pytest.raises(ConvaiKeyError, match="No Convai API key: set convai:apiKey or export"):
        key_of({}, {})
    assert ConvaiSettings.resolve(stack, env).api_key == "stack-key-1"


def test_an_empty_api_key_flag_is_refused_not_replaced_by_the_environment(
    cli: Any, convai: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", "env-key-that-must-not-be-used")
    code, _, err = cli("list", "--base-url", convai.url, "--api-key", "")
    assert code == 2
    assert err.strip() == (
        "error: --api-key is empty: give the key, or leave it out to use $CONVAI_API_KEY"
    )


@pytest.mark.parametrize("command", ["list", "audit", "adopt", "recover"])
def test_help_says_where_the_url_and_the_key_come_from(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--base-url BASE_URL Convai API URL; without it, the stack's convai:baseUrl (with "
        "--stack), else $CONVAI_BASE_URL, else https://api.convai.com: the provider's order"
    ) in text
    assert "convai:apiKey is ciphertext these commands cannot read" in text


def test_a_stack_missing_from_outside_the_root_names_root(cli: Any, tmp_path: Path) -> None:
    code, _, err = cli("audit", "--stack", "dev", "--root", str(tmp_path))
    assert code == 2 and "does not exist: run from the project root or pass --root" in err


def test_list_of_an_empty_account(cli: Any) -> None:
    assert cli("list")[1].strip() == "No private models in this Convai account."


# audit ------------------------------------------------------------------------------------------


def test_audit_is_clean_when_convai_matches(cli: Any, convai: EmulatorProcess, root: Path) -> None:
    register(convai, "alpha", display_name="Alpha")
    register(convai, "beta", display_name="Set by someone")  # not declared: not compared
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root))
    assert code == 0, out
    assert "in sync    alpha" in out and "in sync    beta" in out and "Clean." in out
    assert "api_key cannot be compared" in out


def test_audit_finds_unmanaged_missing_and_drift(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, "alpha", display_name="Renamed", is_uncensored=True)
    register(convai, "stray")
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root), "--json")
    assert code == 1
    body = json.loads(out)
    assert body["clean"] is False
    assert body["unmanaged"] == ["stray"]
    assert body["missing"] == ["beta"]
    # in the order audit has always reported them: model_name, display_name, base_url, is_uncensored
    assert [(d["field"], d["declared"], d["in_convai"]) for d in body["drift"]] == [
        ("display_name", "Alpha", "Renamed"),
        ("is_uncensored", False, True),
    ]
    assert body["note"].startswith("api_key cannot be compared")


def test_audit_text_names_each_difference(cli: Any, convai: EmulatorProcess, root: Path) -> None:
    register(convai, "alpha", display_name="Alpha", base_url="https://elsewhere.example.com/v1")
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root))
    assert code == 1
    assert "drift      alpha.base_url: declared 'http://127.0.0.1:8000/v1', Convai has " in out
    assert "missing    beta" in out
    assert "2 difference(s)." in out


def test_audit_reads_the_real_stack_files(cli: Any, convai: EmulatorProcess) -> None:
    project = Path(__file__).resolve().parent.parent
    code, out, _ = cli("audit", "--stack", "prod", "--root", str(project), "--json")
    declared = {
        m.model_group_name for m in load_stack_file(project / "stacks" / "Pulumi.prod.yaml").models
    }
    assert code == 1 and set(json.loads(out)["missing"]) == declared


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("no-file", "does not exist"),
        ("bad-yaml", "Pulumi.test.yaml:2:1: invalid YAML"),
        ("bad-config", "convai-models:models[0].endpoint: 'nowhere' is not a declared endpoint"),
        ("no-key", "No Convai API key: pass --api-key or export CONVAI_API_KEY.\n"),
        ("unreachable", "could not reach http://127.0.0.1:9"),
    ],
)
def test_audit_errors_are_one_sentence_and_exit_2(
    cli: Any, root: Path, monkeypatch: pytest.MonkeyPatch, setup: str, fragment: str
) -> None:
    path = root / "stacks" / "Pulumi.test.yaml"
    if setup == "no-file":
        path.unlink()
    elif setup == "bad-yaml":
        path.write_text("config: [unclosed")
    elif setup == "bad-config":
        write_stack(
            root,
            "test",
            "http://127.0.0.1:8000/v1",
            [{"model_group_name": "a", "endpoint": "nowhere"}],
        )
    elif setup == "no-key":
        monkeypatch.delenv("CONVAI_API_KEY")
    elif setup == "unreachable":
        monkeypatch.setenv("CONVAI_BASE_URL", "http://127.0.0.1:9")
    code, out, err = cli("audit", "--stack", "test", "--root", str(root))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and fragment in err
    assert "Traceback" not in err


def test_audit_refuses_a_mistyped_key_rather_than_call_every_model_unmanaged(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, "alpha")
    path = root / "stacks" / "Pulumi.test.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["convai-models:model"] = document["config"].pop("convai-models:models")
    path.write_text(yaml.safe_dump(document))
    code, out, err = cli("audit", "--stack", "test", "--root", str(root))
    assert (code, out) == (2, "")
    assert "convai-models:model: neither a setting" in err
    assert "did you mean convai-models:models?" in err
    assert "remove it with `pulumi config rm --stack test convai-models:model`" in err
    assert "unmanaged" not in err


# adopt ------------------------------------------------------------------------------------------


def test_adopt_prints_entries_that_bring_unmanaged_models_under_the_stack(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, "alpha", display_name="Alpha")
    register(convai, "stray-one", display_name="Stray")  # served by the stack's endpoint
    register(convai, "hosted", model_name="gpt-4o-mini", base_url="https://api.openai.com/v1")
    code, out, _ = cli("adopt", "--stack", "test", "--root", str(root), "--json")
    assert code == 0
    entries = json.loads(out)
    assert entries["models"] == [
        {
            "model_group_name": "hosted",
            "endpoint": "hosted",
            "is_uncensored": False,
            "verify_endpoint": True,
            "adopt_existing": True,
        },
        {
            "model_group_name": "stray-one",
            "endpoint": "local",
            "display_name": "Stray",
            "is_uncensored": False,
            "verify_endpoint": True,
            "adopt_existing": True,
        },
    ]
    assert entries["endpoints"] == [
        {
            "name": "hosted",
            "kind": "external",
            "base_url": "https://api.openai.com/v1",
            "model_name": "gpt-4o-mini",
            "api_key_config": "hostedApiKey",
        },
    ]


def test_adopted_entries_make_the_audit_clean(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, "alpha", display_name="Alpha")
    register(convai, "beta")
    register(convai, "hosted", model_name="gpt-4o-mini", base_url="https://api.openai.com/v1")
    _, out, _ = cli("adopt", "--stack", "test", "--root", str(root), "--json")
    entries = json.loads(out)
    path = root / "stacks" / "Pulumi.test.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["convai-models:endpoints"] += entries["endpoints"]
    document["config"]["convai-models:models"] += entries["models"]
    path.write_text(yaml.safe_dump(document))
    assert cli("audit", "--stack", "test", "--root", str(root))[0] == 0


def test_adopt_text_is_yaml_with_the_secret_to_set(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, "hosted", model_name="gpt-4o-mini", base_url="https://api.openai.com/v1")
    _, out, _ = cli("adopt", "--stack", "test", "--root", str(root))
    assert "adopt_existing: true" in out
    assert "# then: pulumi config set --stack test --secret hostedApiKey  # prompts" in out


def test_adopt_on_the_dev_stack_sets_the_secret_through_dev_up(
    cli: Any, convai: EmulatorProcess, tmp_path: Path
) -> None:
    write_stack(tmp_path, "dev", "http://127.0.0.1:8000/v1", [])
    register(convai, "hosted", model_name="gpt-4o-mini", base_url="https://api.openai.com/v1")
    _, out, _ = cli("adopt", "--stack", "dev", "--root", str(tmp_path))
    assert "# then: scripts/dev-up config set --secret hostedApiKey  # prompts" in out
    assert "pulumi config set" not in out


def test_a_stack_key_in_plain_text_is_used_and_a_secret_one_is_not(
    cli: Any, convai: EmulatorProcess, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVAI_API_KEY")
    register(convai, "alpha")
    path = root / "stacks" / "Pulumi.test.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["convai:apiKey"] = {"secure": "v1:ciphertext"}
    path.write_text(yaml.safe_dump(document))
    code, _, err = cli("list", "--stack", "test", "--root", str(root))
    assert code == 2 and "No Convai API key" in err
    document["config"]["convai:apiKey"] = CONVAI_KEY  # the dev stack's way: the emulator's
    path.write_text(yaml.safe_dump(document))
    code, out, _ = cli("list", "--stack", "test", "--root", str(root))
    assert code == 0 and "alpha" in out


def test_two_unmanaged_models_on_one_endpoint_share_one_entry(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    for group in ("hosted-a", "hosted-b"):
        register(convai, group, model_name="gpt-4o-mini", base_url="https://api.openai.com/v1")
    _, out, _ = cli("adopt", "--stack", "test", "--root", str(root), "--json")
    entries = json.loads(out)
    assert [e["name"] for e in entries["endpoints"]] == ["hosted-a"]
    assert [m["endpoint"] for m in entries["models"]] == ["hosted-a", "hosted-a"]


def test_adopt_copies_the_stacks_verify_endpoint_when_its_models_agree(
    cli: Any, convai: EmulatorProcess, tmp_path: Path
) -> None:
    models = [{"model_group_name": "alpha", "endpoint": "local", "verify_endpoint": False}]
    write_stack(tmp_path, "dev", "http://127.0.0.1:8000/v1", models)
    register(convai, "stray")
    _, out, _ = cli("adopt", "--stack", "dev", "--root", str(tmp_path), "--json")
    assert [m["verify_endpoint"] for m in json.loads(out)["models"]] == [False]
    _, out, _ = cli("adopt", "--stack", "dev", "--root", str(tmp_path))
    assert "verify_endpoint: false" in out and "preflight" not in out


def test_adopt_says_the_preflight_will_run_when_the_stack_does_not_agree(
    cli: Any, convai: EmulatorProcess, tmp_path: Path
) -> None:
    models: list[dict[str, Any]] = [
        {"model_group_name": "alpha", "endpoint": "local", "verify_endpoint": False},
        {"model_group_name": "beta", "endpoint": "local"},
    ]
    write_stack(tmp_path, "mixed", "http://127.0.0.1:8000/v1", models)
    register(convai, "stray")
    _, out, _ = cli("adopt", "--stack", "mixed", "--root", str(tmp_path))
    assert "verify_endpoint:" not in out.split("# verify_endpoint")[0]
    assert "`pulumi up` first runs the endpoint preflight" in out


def test_key_names_derive_from_names() -> None:
    assert config_key_for("my-turbo") == "myTurboApiKey"
    assert env_name_for("localVllmApiKey") == "LOCAL_VLLM_API_KEY"


# health -----------------------------------------------------------------------------------------


def test_health_reports_each_model_and_exits_0_when_all_pass(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_endpoint(EndpointBehaviour(api_key=ENDPOINT_KEY)) as url:
        write_stack(tmp_path, "test", url, [{"model_group_name": "alpha", "endpoint": "local"}])
        monkeypatch.setenv("LOCAL_VLLM_API_KEY", ENDPOINT_KEY)
        code, out, _ = cli("health", "--stack", "test", "--root", str(tmp_path), "--timeout", "0")
    assert code == 0, out
    assert out.splitlines()[0].startswith("OK    alpha  llama-3.1-8b at http://127.0.0.1:")
    assert "1 of 1 endpoints healthy." in out
    assert ENDPOINT_KEY not in out


def test_health_reads_generated_keys_from_piped_stack_outputs(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = {"endpointKeys": {"alpha": ENDPOINT_KEY, "beta": "sk-wrong"}}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(outputs)))
    with serve_endpoint(EndpointBehaviour(api_key=ENDPOINT_KEY)) as url:
        write_stack(
            tmp_path,
            "test",
            url,
            [
                {"model_group_name": "alpha", "endpoint": "local"},
                {"model_group_name": "beta", "endpoint": "local"},
            ],
        )
        code, out, _ = cli(
            "health", "--stack", "test", "--root", str(tmp_path), "--outputs", "-", "--timeout", "0"
        )
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("OK    alpha")
    assert lines[1].startswith("FAIL  beta")
    assert "refused the API key" in lines[2]
    assert "1 of 2 endpoints healthy." in out


def test_health_says_where_a_missing_key_comes_from(cli: Any, root: Path) -> None:
    code, out, _ = cli("health", "--stack", "test", "--root", str(root), "--timeout", "0")
    assert code == 1
    assert "export LOCAL_VLLM_API_KEY" in out and "--outputs -" in out


def test_health_refuses_unreadable_outputs(
    cli: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("not json"))
    code, _, err = cli("health", "--stack", "test", "--root", str(root), "--outputs", "-")
    assert code == 2 and "pulumi stack output --json --show-secrets" in err


def test_the_console_script_and_module_run(convai: EmulatorProcess) -> None:
    env = {
        "CONVAI_API_KEY": CONVAI_KEY,
        "CONVAI_BASE_URL": convai.url,
        "PATH": str(Path(sys.executable).parent),
    }
    for command in (
        ["convai-models", "list", "--json"],
        [sys.executable, "-m", "convai_stack", "list", "--json"],
        [sys.executable, "-m", "convai_provider", "list", "--json"],
    ):
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["count"] == 0


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [
        ("[" * 100_000, "JSON nested deeper than 64 levels"),
        ('{"endpointKeys": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested deeper"),
    ],
)
def test_health_refuses_deeply_nested_outputs_in_one_line(
    cli: Any, root: Path, monkeypatch: pytest.MonkeyPatch, outputs: str, fragment: str
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(outputs))
    code, out, err = cli("health", "--stack", "test", "--root", str(root), "--outputs", "-")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_usage_names_the_command_the_way_it_was_run() -> None:
    assert program_name("/venv/bin/convai-models") == "convai-models"
    assert program_name("/work/convai_provider/__main__.py") == "python -m convai_provider"
    assert program_name("/work/convai_stack/__main__.py") == "python -m convai_stack"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert ENTRY_POINT in scripts

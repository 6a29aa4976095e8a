"""The operator commands with `--account ALIAS`: the key from $CONVAI_API_KEY_<ALIAS>, the URL from
the stack's account; `audit` of a stack covers every account its models use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import AuthenticationError
from convai_provider.api.wire import RegisterRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.type_tokens import TYPE_TOKEN
from convai_stack.commands.main import main
from convai_stack.commands.recovery import recover_pending_creates
from testkit.convai import CONVAI_KEY
from testkit.hostile_server import http_answer, serve_answer
from tests.test_recovery import exported, listed, model_inputs, pending

PARTNER_KEY = "convai-partner-key-3c61f8"
ENDPOINT_URL = "http://127.0.0.1:8000/v1"


@pytest.fixture
def cli(
    convai: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", PARTNER_KEY)
    monkeypatch.setenv("CONVAI_BASE_URL", convai.url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert PARTNER_KEY not in out + err and CONVAI_KEY not in out + err
        return code, out, err

    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A stack with alpha in the default account and beta in `partner`, whose key is a secret
    (ciphertext the commands cannot read)."""
    config = {
        "convai:accounts": {"partner": {"apiKey": {"secure": "v1:ciphertext"}}},
        "convai-models:endpoints": [
            {
                "name": "local",
                "kind": "external",
                "base_url": ENDPOINT_URL,
                "model_name": "llama-3.1-8b",
                "api_key_config": "localVllmApiKey",
            },
        ],
        "convai-models:models": [
            {"model_group_name": "alpha", "endpoint": "local", "display_name": "Alpha"},
            {"model_group_name": "beta", "endpoint": "local", "account": "partner"},
        ],
    }
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def register(convai: EmulatorProcess, key: str, group: str, **fields: Any) -> None:
    request = {
        "model_group_name": group,
        "model_name": "llama-3.1-8b",
        "api_key": "k",
        "is_uncensored": False,
        "base_url": ENDPOINT_URL,
        **fields,
    }
    with ConvaiClient(key, convai.url) as client:
        client.register(RegisterRequest(**request))


def test_list_of_an_account_uses_its_environment_key(cli: Any, convai: EmulatorProcess) -> None:
    register(convai, PARTNER_KEY, "beta")
    register(convai, CONVAI_KEY, "alpha")
    code, out, _ = cli("list", "--account", "partner", "--json")
    assert code == 0
    assert [m["model_group_name"] for m in json.loads(out)["models"]] == ["beta"]


def test_audit_of_a_stack_covers_every_account_its_models_use(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, CONVAI_KEY, "alpha", display_name="Alpha")
    register(convai, PARTNER_KEY, "beta")
    register(convai, PARTNER_KEY, "stray")
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root), "--json")
    assert code == 1
    body = json.loads(out)
    assert body["clean"] is False
    default, partner = body["accounts"]
    assert (default["account"], default["in_sync"], default["unmanaged"]) == (None, ["alpha"], [])
    assert (partner["account"], partner["in_sync"], partner["unmanaged"]) == (
        "partner",
        ["beta"],
        ["stray"],
    )
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root))
    assert "Stack 'test' against Convai:\n  in sync    alpha" in out
    assert "Stack 'test' against Convai account 'partner':\n  in sync    beta" in out
    code, out, _ = cli("audit", "--stack", "test", "--root", str(root), "--account", "partner")
    assert "alpha" not in out and "unmanaged  stray" in out


@pytest.mark.parametrize("flag", ["--api-key", "--base-url"])
def test_audit_of_several_accounts_never_sends_one_accounts_key_or_url_to_another(
    cli: Any, root: Path, flag: str
) -> None:
    """partner's baseUrl is a loopback server that records what it is sent: --api-key (the
    default account's key) went there, and --base-url took every account's key elsewhere."""
    recorder = http_answer(401, {"status": "error", "message": "Invalid API key"})
    with serve_answer(recorder) as partner_url:
        path = root / "stacks" / "Pulumi.test.yaml"
        stack = yaml.safe_load(path.read_text())
        stack["config"]["convai:accounts"]["partner"]["baseUrl"] = partner_url
        path.write_text(yaml.safe_dump(stack))
        given = CONVAI_KEY if flag == "--api-key" else partner_url
        code, _, err = cli("audit", "--stack", "test", "--root", str(root), flag, given)
    assert recorder.requests == []
    assert code == 2
    assert f"{flag} give the default account's setting" in err
    assert "has models in the default account, account 'partner'" in err
    assert "$CONVAI_API_KEY, $CONVAI_API_KEY_PARTNER" in err and "--account ALIAS" in err


def test_audit_of_a_stack_whose_models_are_all_in_another_account_never_sends_it_the_flags_key(
    cli: Any, root: Path
) -> None:
    """--api-key is the default account's (its help says so): an audit that covers partner
    alone must not send it there."""
    recorder = http_answer(401, {"status": "error", "message": "Invalid API key"})
    with serve_answer(recorder) as partner_url:
        path = root / "stacks" / "Pulumi.test.yaml"
        stack = yaml.safe_load(path.read_text())
        stack["config"]["convai:accounts"]["partner"]["baseUrl"] = partner_url
        models = stack["config"]["convai-models:models"]
        stack["config"]["convai-models:models"] = [m for m in models if m.get("account")]
        path.write_text(yaml.safe_dump(stack))
        code, _, err = cli("audit", "--stack", "test", "--root", str(root), "--api-key", CONVAI_KEY)
    assert recorder.requests == []
    assert code == 2 and "has models in account 'partner'" in err


def test_audit_of_one_account_takes_its_key_from_the_flag(
    cli: Any, convai: EmulatorProcess, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(convai, PARTNER_KEY, "beta")
    monkeypatch.delenv("CONVAI_API_KEY_PARTNER")
    code, out, _ = cli(
        "audit",
        "--stack",
        "test",
        "--root",
        str(root),
        "--account",
        "partner",
        "--api-key",
        PARTNER_KEY,
    )
    assert code == 0 and "in sync    beta" in out


def test_audit_without_an_accounts_key_names_where_to_give_it(
    cli: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVAI_API_KEY_PARTNER")
    code, _, err = cli("audit", "--stack", "test", "--root", str(root))
    assert code == 2
    # a command cannot read the stack's secret, so it names what it can read instead
    assert "error: No Convai API key for account 'partner': pass --api-key or export " in err
    assert "CONVAI_API_KEY_PARTNER." in err
    assert "pulumi config set" not in err


def test_an_account_the_stack_does_not_declare_is_refused_naming_the_declared_ones(
    cli: Any, root: Path
) -> None:
    code, _, err = cli("audit", "--stack", "test", "--root", str(root), "--account", "other")
    assert code == 2
    assert "account 'other' is not declared" in err and "(declared: partner;" in err


@pytest.mark.parametrize("alias", ["Partner", "team-a", "default"])
def test_an_alias_of_the_wrong_form_is_refused_by_the_parser(cli: Any, alias: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("list", "--account", alias)
    assert exited.value.code == 2


def test_adopt_of_an_account_writes_entries_in_that_account(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    register(convai, PARTNER_KEY, "beta")
    register(convai, PARTNER_KEY, "stray")
    register(convai, CONVAI_KEY, "elsewhere")
    code, out, _ = cli(
        "adopt", "--stack", "test", "--root", str(root), "--account", "partner", "--json"
    )
    assert code == 0
    assert [(m["model_group_name"], m["account"]) for m in json.loads(out)["models"]] == [
        ("stray", "partner")
    ]


def test_health_of_an_account_checks_its_models_only(cli: Any, root: Path) -> None:
    code, out, _ = cli("health", "--stack", "test", "--root", str(root), "--account", "partner")
    assert code == 1  # nothing serves the endpoint, and its key is not set
    assert "beta" in out and "alpha" not in out
    assert "of 1 endpoints healthy." in out


def test_recover_settles_the_pending_creates_of_its_account_only() -> None:
    state = exported(
        pending(TYPE_TOKEN, "alpha", model_inputs("alpha")),
        pending(TYPE_TOKEN, "beta", model_inputs("beta", account="partner")),
    )
    partner = recover_pending_creates(state, {"beta": listed("beta")}, "partner")
    assert partner.adopted == ["beta"]
    assert (partner.elsewhere, partner.settled) == ({"alpha": None}, False)
    left = partner.state["deployment"]["pending_operations"]
    assert [op["resource"]["urn"].rsplit("::", 1)[-1] for op in left] == ["alpha"]
    default = recover_pending_creates(partner.state, {}, None)
    assert default.dropped == ["alpha"]


def test_the_emulator_rotates_an_accounts_key_as_convai_regenerates_one(
    convai: EmulatorProcess,
) -> None:
    register(convai, PARTNER_KEY, "beta")
    convai.rotate_key(PARTNER_KEY, "convai-partner-rotated-77e0aa")
    with ConvaiClient("convai-partner-rotated-77e0aa", convai.url) as client:
        assert [m.model_group_name for m in client.list_models().models] == ["beta"]
    with (
        ConvaiClient(PARTNER_KEY, convai.url, max_retries=0) as client,
        pytest.raises(AuthenticationError),
    ):
        client.list_models()
    with pytest.raises(httpx.HTTPStatusError):
        convai.rotate_key(PARTNER_KEY, "convai-partner-again-1b2c3d")  # rotated out already


def test_list_prints_only_the_fields_convai_documents(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    echoed = {"model_group_name": "m", "model_name": "x", "api_key": "sk-echoed-endpoint-5c1d"}
    with serve_answer(http_answer(200, {"status": "success", "models": [echoed]})) as url:
        monkeypatch.setenv("CONVAI_BASE_URL", url)
        code, out, _ = cli("list", "--json")
    assert code == 0
    assert "sk-echoed-endpoint-5c1d" not in out and "api_key" not in out
    assert json.loads(out)["models"][0]["model_group_name"] == "m"


def test_recover_of_one_account_says_what_it_left_for_another_before_any_import(
    cli: Any, convai: EmulatorProcess, root: Path
) -> None:
    """An `up` interrupted in two accounts: a recover of one must not say "import now", since
    `pulumi stack import` forgets the other account's pending create."""
    register(
        convai,
        PARTNER_KEY,
        "beta",
        display_name="beta model",
        base_url="https://llm.example.com/v1",
    )
    state = root / "export.json"
    state.write_text(
        json.dumps(
            exported(
                pending(TYPE_TOKEN, "alpha", model_inputs("alpha")),
                pending(TYPE_TOKEN, "beta", model_inputs("beta", account="partner")),
            )
        )
    )
    settled = root / "settled.json"
    flags = ["--stack", "test", "--root", str(root), "--out", str(settled)]
    code, _, err = cli("recover", *flags, "--state", str(state), "--account", "partner")
    assert code == 1
    assert (
        "left       alpha: a pending create in the default account, settled only by a "
        "recover with no --account" in err
    )
    assert f"Before importing, run recover on {settled} again (no --account)" in err
    assert "Next: `pulumi stack import" not in err
    code, _, err = cli("recover", *flags, "--state", str(settled))
    assert code == 0 and "dropped    alpha" in err and "Next: `pulumi stack import" in err


def test_audit_of_two_accounts_given_one_key_is_refused_naming_both(
    cli: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", CONVAI_KEY)
    code, _, err = cli("audit", "--stack", "test", "--root", str(root))
    assert code == 2
    assert "the default account (convai:apiKey (or $CONVAI_API_KEY)) and account 'partner'" in err
    assert "are given the same Convai key" in err


def test_an_alias_of_the_wrong_form_is_refused_naming_the_flag_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["list", "--account", "Partner"])
    assert exited.value.code == 2
    said = capsys.readouterr().err.splitlines()[-1]
    assert "argument --account: must be " in said, said
    assert said.count("--account") == 1, said


def test_a_refused_account_url_names_the_accounts_own_setting(
    root: Path, cli: Any, tmp_path: Path
) -> None:
    """#25's F16: the URL came from convai:accounts.partner.baseUrl, and the refusal named
    convai:baseUrl, a setting the user had not written."""
    path = root / "stacks" / "Pulumi.test.yaml"
    stack = yaml.safe_load(path.read_text())
    stack["config"]["convai:accounts"]["partner"]["baseUrl"] = "http://convai.example.com"
    path.write_text(yaml.safe_dump(stack))
    code, _, err = cli("list", "--stack", "test", "--root", str(root), "--account", "partner")
    assert code == 2
    assert err.startswith(
        "error: convai:accounts.partner.baseUrl 'http://convai.example.com' must use https"
    )

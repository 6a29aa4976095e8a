"""The emulator behaves as Convai documents, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import signal
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.server import listening_socket

KEY = {"CONVAI-API-KEY": "emulator-test-account"}
MODEL = {
    "model_group_name": "my-turbo",
    "model_name": "gpt-4o-mini",
    "api_key": "sk-proxy-123",
    "is_uncensored": False,
    "display_name": "Turbo (Private)",
    "base_url": "https://llm.example.com/v1",
}


def post(
    emu: EmulatorProcess, path: str, body: object = None, headers: dict[str, str] = KEY
) -> httpx.Response:
    return httpx.post(f"{emu.url}/llm-models/{path}", json=body, headers=headers, timeout=10)


def listed(emu: EmulatorProcess, headers: dict[str, str] = KEY) -> list[dict[str, object]]:
    models: list[dict[str, object]] = post(emu, "list", headers=headers).json()["models"]
    return models


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error"
    assert fragment in body["message"]
    uuid.UUID(body["transactionID"])


def test_register_answers_as_the_seed_documents(convai: EmulatorProcess) -> None:
    response = post(convai, "register", MODEL)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success"
    assert body["model_group_name"] == "my-turbo"
    assert body["model_name"] == "gpt-4o-mini"
    assert body["display_name"] == "Turbo (Private)"
    assert body["message"] == "Model 'my-turbo' registered successfully"
    uuid.UUID(body["transactionID"])


def test_list_reports_every_field_but_the_endpoint_key(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    body = post(convai, "list").json()
    assert body["status"] == "success" and body["count"] == 1
    (model,) = body["models"]
    assert model["category"] == "Private"
    assert model["base_url"] == "https://llm.example.com/v1"
    assert model["is_uncensored"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(model["created_at"]))
    assert "api_key" not in model
    assert "sk-proxy-123" not in post(convai, "list").text


def test_base_url_defaults_to_openai(convai: EmulatorProcess) -> None:
    post(convai, "register", {k: v for k, v in MODEL.items() if k != "base_url"})
    assert listed(convai)[0]["base_url"] == "https://api.openai.com/v1"


@pytest.mark.parametrize("missing", ["model_group_name", "model_name", "api_key", "is_uncensored"])
def test_register_names_a_missing_required_field(convai: EmulatorProcess, missing: str) -> None:
    body = {k: v for k, v in MODEL.items() if k != missing}
    assert_error(post(convai, "register", body), 400, f"Missing required field: {missing}")
    assert listed(convai) == []


def test_register_refuses_a_non_boolean_is_uncensored(convai: EmulatorProcess) -> None:
    assert_error(post(convai, "register", {**MODEL, "is_uncensored": "no"}), 400, "is_uncensored")


def test_register_refuses_a_body_that_is_not_json(convai: EmulatorProcess) -> None:
    response = httpx.post(f"{convai.url}/llm-models/register", content=b"{oops", headers=KEY)
    assert_error(response, 400, "valid JSON")


def test_group_name_is_unique_per_account(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    again = {**MODEL, "display_name": "Other"}
    assert_error(post(convai, "register", again), 409, "already exists")
    assert len(listed(convai)) == 1


def test_display_name_is_unique_per_account(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    other = {**MODEL, "model_group_name": "other"}
    assert_error(post(convai, "register", other), 409, "already exists")
    post(convai, "register", {**other, "display_name": "Other"})
    renamed = {"model_group_name": "other", "display_name": "Turbo (Private)"}
    assert_error(post(convai, "update", renamed), 409, "already exists")


def test_update_changes_only_the_fields_sent(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    response = post(
        convai,
        "update",
        {"model_group_name": "my-turbo", "display_name": "Turbo v2", "api_key": "sk-2"},
    )
    body = response.json()
    assert body["updated_fields"] == ["display_name", "api_key"]
    assert body["message"] == "Model 'my-turbo' updated successfully"
    (model,) = listed(convai)
    assert model["display_name"] == "Turbo v2"
    assert model["base_url"] == MODEL["base_url"]


def test_update_cannot_change_the_model_name(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    response = post(convai, "update", {"model_group_name": "my-turbo", "model_name": "other"})
    assert_error(response, 400, "No valid fields to update")
    assert listed(convai)[0]["model_name"] == "gpt-4o-mini"


def test_update_and_deregister_of_an_unknown_group_are_404(convai: EmulatorProcess) -> None:
    assert_error(
        post(convai, "update", {"model_group_name": "ghost", "display_name": "x"}), 404, "ghost"
    )
    assert_error(post(convai, "deregister", {"model_group_name": "ghost"}), 404, "ghost")


def test_deregister_removes_the_model(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    body = post(convai, "deregister", {"model_group_name": "my-turbo"}).json()
    assert body["message"] == "Model 'my-turbo' deregistered successfully"
    assert listed(convai) == []


@pytest.mark.parametrize("headers", [{}, {"CONVAI-API-KEY": ""}])
@pytest.mark.parametrize("path", ["register", "update", "deregister", "list"])
def test_a_missing_or_empty_key_is_401(
    convai: EmulatorProcess, path: str, headers: dict[str, str]
) -> None:
    assert_error(post(convai, path, MODEL, headers=headers), 401, "API key")


def test_accounts_never_see_each_other(convai: EmulatorProcess) -> None:
    other = {"CONVAI-API-KEY": "another-account"}
    post(convai, "register", MODEL)
    assert listed(convai, other) == []
    assert post(convai, "register", MODEL, headers=other).status_code == 200
    assert_error(
        post(convai, "deregister", {"model_group_name": "ghost"}, headers=other), 404, "ghost"
    )
    post(convai, "deregister", {"model_group_name": "my-turbo"}, headers=other)
    assert len(listed(convai)) == 1


def test_every_reply_has_a_fresh_transaction_id(convai: EmulatorProcess) -> None:
    ids = {post(convai, "list").json()["transactionID"] for _ in range(5)}
    ids.add(post(convai, "deregister", {"model_group_name": "x"}).json()["transactionID"])
    assert len(ids) == 6


def test_concurrent_registers_of_one_name_create_exactly_one(convai: EmulatorProcess) -> None:
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(convai, "register", MODEL).status_code, range(16)))
    assert statuses.count(200) == 1 and statuses.count(409) == 15
    assert len(listed(convai)) == 1


def test_restart_loses_nothing(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path / "db.sqlite3") as emu:
        post(emu, "register", MODEL)
        before = listed(emu)
        emu.restart()
        assert listed(emu) == before


def test_injected_error_carries_retry_after_and_leaves_state_alone(convai: EmulatorProcess) -> None:
    convai.inject(path="/llm-models/register", status=429, retry_after="7", count=1)
    response = post(convai, "register", MODEL)
    assert_error(response, 429, "Injected")
    assert response.headers["Retry-After"] == "7"
    assert listed(convai) == []
    assert post(convai, "register", MODEL).status_code == 200


def test_drop_after_commit_commits_then_breaks_the_reply(convai: EmulatorProcess) -> None:
    convai.inject(path="/llm-models/register", drop_after_commit=True, count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        post(convai, "register", MODEL)
    assert [m["model_group_name"] for m in listed(convai)] == ["my-turbo"]


def test_fraction_faults_are_reproducible_with_a_seed(convai: EmulatorProcess) -> None:
    def run() -> list[int]:
        convai.clear_faults()
        convai.inject(path="/llm-models/list", status=503, fraction=0.5, seed=42)
        return [post(convai, "list").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 0 < first.count(503) < 20


def test_latency_is_injected(convai: EmulatorProcess) -> None:
    convai.inject(path="/llm-models/list", latency_ms=300, count=1)
    slow = httpx.post(f"{convai.url}/llm-models/list", headers=KEY).elapsed.total_seconds()
    assert slow >= 0.3


def test_request_counts_are_reported_per_path(convai: EmulatorProcess) -> None:
    post(convai, "list")
    post(convai, "list")
    post(convai, "register", MODEL)
    counts = convai.request_counts()
    assert counts["/llm-models/list"] == 2 and counts["/llm-models/register"] == 1


def test_the_emulator_log_holds_no_key(convai: EmulatorProcess) -> None:
    post(convai, "register", MODEL)
    post(convai, "update", {"model_group_name": "my-turbo", "api_key": "sk-rotated-999"})
    log = convai.log_path.read_text()
    assert "POST /llm-models/update" in log
    for secret in ("emulator-test-account", "sk-proxy-123", "sk-rotated-999"):
        assert secret not in log


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"model_group_name": ' + b"[" * 5000])
@pytest.mark.parametrize("path", ["register", "update", "deregister", "list"])
def test_deeply_nested_json_is_a_400_in_the_envelope(
    convai: EmulatorProcess, path: str, body: bytes
) -> None:
    response = httpx.post(f"{convai.url}/llm-models/{path}", content=body, headers=KEY, timeout=10)
    if path == "list":  # list reads no body
        assert response.status_code == 200
    else:
        assert_error(response, 400, "Request body must be valid JSON")


def test_a_deeply_nested_fault_rule_is_a_400_in_the_envelope(convai: EmulatorProcess) -> None:
    response = httpx.post(f"{convai.url}/_emulator/faults", content=b"[" * 100_000, timeout=10)
    assert_error(response, 400, "nested deeper")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_emulator_stops_cleanly_leaving_only_its_database(
    tmp_path: Path, stop: signal.Signals
) -> None:
    db = tmp_path / "X.sqlite3"
    emu = EmulatorProcess(db, log_path=tmp_path / "emulator.log")
    emu.start()
    assert httpx.post(f"{emu.url}/llm-models/list", headers=KEY, timeout=10).status_code == 200
    assert emu._proc is not None
    emu._proc.send_signal(stop)
    code = emu._proc.wait(timeout=30)
    emu._proc = None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.sqlite3", "emulator.log"]
    log = (tmp_path / "emulator.log").read_text()
    assert code == 0 and "Traceback" not in log, log


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        ({"status": 200}, "Field status must be at least 400"),
        ({"statsu": 503}, "Field statsu is not a known field; remove it or check its spelling"),
        ({"latency_ms": "x"}, "Field latency_ms must be a whole number"),
        ({"count": 0}, "Field count must be at least 1"),
        ([1], "The request body must be a mapping of fields"),
    ],
)
def test_a_bad_fault_rule_is_refused_with_a_sentence_in_the_envelope(
    convai: EmulatorProcess, rule: object, sentence: str
) -> None:
    response = httpx.post(f"{convai.url}/_emulator/faults", json=rule, timeout=10)
    assert_error(response, 400, sentence)
    assert "pydantic" not in response.text and "validation error" not in response.text


def test_the_active_fault_rules_can_be_read(convai: EmulatorProcess) -> None:
    faults = f"{convai.url}/_emulator/faults"
    assert httpx.get(faults, timeout=10).json() == {"faults": []}
    convai.inject(path="/llm-models/list", status=503, count=2)
    convai.inject(latency_ms=5)
    post(convai, "list")
    assert httpx.get(faults, timeout=10).json() == {
        "faults": [
            {"rule": {"path": "/llm-models/list", "status": 503, "count": 2}, "remaining": 1},
            {"rule": {"latency_ms": 5}, "remaining": None},
        ]
    }
    post(convai, "list")
    assert [f["rule"] for f in httpx.get(faults, timeout=10).json()["faults"]] == [
        {"latency_ms": 5}
    ]
    foreign = httpx.get(faults, headers={"Origin": "https://evil.example"}, timeout=10)
    assert_error(foreign, 403, "is not this emulator")


def test_the_socket_accepts_connections_before_the_address_is_announced() -> None:
    """The address is printed before uvicorn's loop runs: a client that reads it and connects at
    once must be queued, not refused."""
    sock = listening_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass
    finally:
        sock.close()

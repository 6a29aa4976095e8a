"""What a server says reaches a message or a terminal without a key and without control
characters, wherever in its reply the server puts them."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import RedirectError
from convai_provider.api.wire import LIST_PATH
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards import redaction
from convai_provider.guards.keys import UnfitKeyError, fit_key
from convai_provider.guards.redaction import MIN_PIECE, redact, remember
from convai_provider.guards.text import SafeLogFilter, server_text
from convai_provider.preflight.checks import check_endpoint
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_stack.commands.main import main
from testkit.convai import turbo
from testkit.hostile_server import Answer, http_answer, serve_answer
from tests.test_hostile_input import write_stack

CONVAI_KEY_39 = "cvk-Q7vR2mZ8pL4xT9nB3kW6yH1cD5fG0jS2aE7"
ENDPOINT_KEY_41 = "sk-M3qN8wK1vX6zR4tY9uP2oI7eA5sD0fG3hJ8lZ1c"
PIECE = 8


def pieces(key: str, length: int = PIECE) -> list[str]:
    """Every run of `length` characters of `key`: none may appear in a message."""
    return [key[i : i + length] for i in range(len(key) - length + 1)]


def assert_no_piece_of(key: str, text: str, length: int = PIECE) -> None:
    leaked = [piece for piece in pieces(key, length) if piece in text]
    assert leaked == [], f"pieces of the key in: {text!r}"


# Around every cut a message makes: 60 bytes of what is not HTTP, 120 of a reply that is not
# JSON, 200 of a text body, 300 characters of a server's message.
OFFSETS = [0, 30, 50, 60, 90, 110, 119, 150, 190, 199, 200, 250, 262, 270, 290, 299, 300, 400]


@pytest.mark.parametrize("offset", OFFSETS)
def test_the_list_command_shows_no_piece_of_a_key_echoed_anywhere(
    offset: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "x" * offset + CONVAI_KEY_39 + " was refused"
    echo = http_answer(401, {"status": "error", "message": message})
    with serve_answer(echo) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
        assert main(["list", "--base-url", url]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: Convai list failed with HTTP 401")
    assert_no_piece_of(CONVAI_KEY_39, out + err)


def split(key: str, parts: int) -> list[str]:
    size = -(-len(key) // parts)
    return [key[i : i + size] for i in range(0, len(key), size)]


@pytest.mark.parametrize("parts", [2, 3])
def test_the_list_command_shows_no_piece_of_a_key_split_over_fields(
    parts: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server echoes the key in pieces: the start in `message`, the rest in `transactionID`
    (and the middle of it too). Each field alone holds no whole key, yet together they gave it."""
    *start, rest = split(CONVAI_KEY_39, parts)
    body = {"status": "error", "message": f"bad key {' '.join(start)}", "transactionID": rest}
    with serve_answer(http_answer(401, body)) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
        assert main(["list", "--base-url", url]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: Convai list failed with HTTP 401")
    assert [piece for piece in split(CONVAI_KEY_39, parts) if piece in out + err] == []
    assert_no_piece_of(CONVAI_KEY_39, out + err, MIN_PIECE)


def test_a_key_shown_masked_around_its_middle_keeps_no_piece_of_it() -> None:
    """As OpenAI-style APIs quote a refused key: its start and end around asterisks."""
    remember(ENDPOINT_KEY_41)
    masked = f"Incorrect API key provided: {ENDPOINT_KEY_41[:14]}****{ENDPOINT_KEY_41[-14:]}."
    assert server_text(masked) == "Incorrect API key provided: [secret]****[secret]."


def test_a_message_is_searched_for_the_keys_it_may_quote_not_for_every_key_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider remembers each endpoint key of its stack, and its log redacts every line: a
    1,000-model `up` looked for 1,000 keys in each of its 1,000 lines (6.6 ms a line)."""
    for memory, empty in (("_forms", {}), ("_holding_block", {}), ("_longest", 0)):
        monkeypatch.setattr(redaction, memory, empty)  # these thousand keys are this test's alone
    stack_keys = [hashlib.sha256(f"endpoint {i}".encode()).hexdigest()[:48] for i in range(1000)]
    remember(*stack_keys)
    searched: list[str] = []
    search = redaction._without_pieces

    def searching(text: str, form: str) -> str:
        searched.append(form)
        return search(text, form)

    monkeypatch.setattr(redaction, "_without_pieces", searching)
    assert redact("registered Convai private model m-17") == "registered Convai private model m-17"
    assert searched == []
    whole, cut = stack_keys[17], stack_keys[400]
    message = f"endpoint refused {whole}; it echoed ...{cut[5 : 5 + MIN_PIECE]}..."
    assert redact(message) == "endpoint refused [secret]; it echoed ...[secret]..."
    assert set(searched) == {whole, cut}


def test_pieces_shorter_than_a_key_of_words_shares_with_text_are_kept() -> None:
    remember("sk-endpoint")
    assert server_text("Fix the endpoint, then sk-endpoint") == "Fix the endpoint, then [secret]"


@pytest.mark.parametrize("offset", OFFSETS)
def test_the_list_command_shows_no_piece_of_a_key_in_a_body_that_is_not_json(
    offset: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = ("<p>" + "x" * offset + CONVAI_KEY_39 + "</p>").encode()
    with serve_answer(http_answer(200, raw_body=body)) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
        assert main(["list", "--base-url", url]) == 2
    out, err = capsys.readouterr()
    assert "not a JSON" in err or "not Convai's" in err, err
    assert_no_piece_of(CONVAI_KEY_39, out + err)


@pytest.mark.parametrize("offset", [30, 50])  # each is retried: two straddle the cut
def test_the_list_command_shows_no_piece_of_a_key_in_a_reply_that_is_not_http(
    offset: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_answer(Answer(("x" * offset + CONVAI_KEY_39 + "\r\n").encode())) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
        assert main(["list", "--base-url", url]) == 2
    out, err = capsys.readouterr()
    assert "status line" in err, err
    assert_no_piece_of(CONVAI_KEY_39, out + err)


@pytest.mark.parametrize("offset", OFFSETS)
def test_a_create_error_shows_no_piece_of_an_endpoint_key_echoed_anywhere(
    offset: int, convai: EmulatorProcess
) -> None:
    provider = PrivateModelProvider()
    config = {"convai:apiKey": CONVAI_KEY_39, "convai:baseUrl": convai.url}
    provider.configure(ConfigureRequest(Config(config, "convai-models")))
    message = "Incorrect API key provided: " + "x" * offset + ENDPOINT_KEY_41
    echo = http_answer(401, {"error": {"message": message}})
    with serve_answer(echo) as url, pytest.raises(ConvaiOperationError) as caught:
        provider.create(turbo(api_key=ENDPOINT_KEY_41, base_url=f"{url}/v1", verify_endpoint=True))
    assert "refused the API key" in str(caught.value)
    assert_no_piece_of(ENDPOINT_KEY_41, str(caught.value))


# Control characters: shown escaped, never acted on --------------------------------------------

ESC_NAME = "\x1b[2J\x1b]0;owned\x07evil"
ROW_NAME = "fake\nGROUP-FAKE  gpt  Fake  https://x  yes  now"
ACTING = ["\x1b", "\x07", "\x9b", "\u202e", "\r"]
"""Characters a terminal acts on: none may reach it raw."""

HOSTILE_MODELS = [
    {
        "model_group_name": ROW_NAME,
        "model_name": ESC_NAME,
        "display_name": "\u202eevil",
        "base_url": "https://x/\x9b2J",
        "is_uncensored": False,
        "created_at": "now\r",
    }
]


def hostile_list() -> dict[str, Answer]:
    reply = {"status": "success", "models": HOSTILE_MODELS, "count": 1}
    return {LIST_PATH: http_answer(200, reply)}


def assert_nothing_acts(text: str) -> None:
    assert [ch for ch in ACTING if ch in text] == [], repr(text)


def test_the_list_table_escapes_what_convai_named_its_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
    with serve_answer(hostile_list()) as url:
        assert main(["list", "--base-url", url]) == 0
    out, err = capsys.readouterr()
    assert_nothing_acts(out + err)
    _header, row = out.splitlines()  # the newline in the name made no row of its own
    assert row.startswith("fake\\nGROUP-FAKE") and "\\x1b[2J\\x1b]0;owned\\x07evil" in row


def test_audit_escapes_what_convai_named_its_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
    write_stack(tmp_path, "http://127.0.0.1:9/v1")
    with serve_answer(hostile_list()) as url:
        code = main(["audit", "--stack", "s", "--root", str(tmp_path), "--base-url", url])
    out, err = capsys.readouterr()
    assert code == 1
    assert_nothing_acts(out + err)
    unmanaged = [line for line in out.splitlines() if "unmanaged" in line]
    assert len(unmanaged) == 1 and "fake\\nGROUP-FAKE" in unmanaged[0]
    assert not any(line.startswith("GROUP-FAKE") for line in out.splitlines())


def test_a_convai_error_message_reaches_the_terminal_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = http_answer(400, {"status": "error", "message": f"bad\n{ESC_NAME}\u202e\x9b"})
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY_39)
    with serve_answer(echo) as url:
        assert main(["list", "--base-url", url]) == 2
    out, err = capsys.readouterr()
    assert_nothing_acts(out + err)
    assert err.count("\n") == 1 and "bad\\n\\x1b[2J" in err


def test_an_endpoint_listing_hostile_model_names_reaches_the_terminal_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listing = http_answer(200, {"data": [{"id": ESC_NAME}, {"id": ROW_NAME}]})
    with serve_answer(listing) as url:
        argv = ["preflight", "--base-url", f"{url}/v1", "--model", "m", "--timeout", "0"]
        assert main([*argv, "--api-key", ENDPOINT_KEY_41]) == 1
    out, err = capsys.readouterr()
    assert_nothing_acts(out + err)
    assert "\\x1b[2J" in out and "'fake\\nGROUP-FAKE" in out
    assert not any(line.startswith("GROUP-FAKE") for line in out.splitlines())


def test_a_provider_error_quoting_what_convai_holds_is_escaped(convai: EmulatorProcess) -> None:
    provider = PrivateModelProvider()
    listed = [{**HOSTILE_MODELS[0], "model_group_name": "turbo"}]
    reply = {"status": "success", "models": listed, "count": 1}
    with serve_answer({LIST_PATH: http_answer(200, reply)}) as url:
        config = {"convai:apiKey": CONVAI_KEY_39, "convai:baseUrl": url}
        provider.configure(ConfigureRequest(Config(config, "convai-models")))
        with pytest.raises(ConvaiOperationError) as caught:
            provider.create(turbo(adopt_existing=True))
    assert "model_name '\\x1b[2J" in str(caught.value)
    assert_nothing_acts(str(caught.value))


def test_the_provider_log_escapes_what_it_quotes() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeLogFilter())
    log = logging.getLogger("convai_provider.test_escaping")
    log.addHandler(handler)
    log.warning("model %s is gone\nsecond line", ESC_NAME)
    assert_nothing_acts(stream.getvalue())
    assert stream.getvalue() == "model \\x1b[2J\\x1b]0;owned\\x07evil is gone\nsecond line\n"


LONG_KEY = "lk-" + "Zq8Wm2Xr7Tn4Vb1Yc6Ud3Sf9Pg5Oh0Ij" * 8
"""A key far longer than most: redacting it shrinks a text a lot, pulling what follows forward."""


@given(
    parts=st.lists(st.sampled_from([CONVAI_KEY_39, LONG_KEY, "x", "é\n", "y" * 50]), max_size=30),
    limit=st.integers(min_value=1, max_value=400),
    more_follows=st.booleans(),
)
def test_no_cut_leaves_a_piece_of_a_key(parts: list[str], limit: int, more_follows: bool) -> None:
    remember(CONVAI_KEY_39, LONG_KEY)
    text = "".join(parts)
    shown = server_text(text, limit, more_follows=more_follows)
    assert_no_piece_of(CONVAI_KEY_39, shown)
    assert_no_piece_of(LONG_KEY, shown)
    assert len(shown) <= limit + 1
    assert shown.endswith("…") or not more_follows


def test_a_text_shorter_than_the_limit_is_shown_whole_with_its_keys_redacted() -> None:
    remember(CONVAI_KEY_39)
    assert server_text(f"a {CONVAI_KEY_39} b\n", 300) == "a [secret] b\\n"
    assert server_text("y" * 301, 300) == "y" * 300 + "…"


def test_a_redirect_location_is_quoted_percent_encoded_by_the_client_and_the_preflight() -> None:
    redirect = http_answer(302, {}, headers={"Location": "/elsewhere\x9b2J\u202e"})
    with serve_answer(redirect) as url:
        with (
            ConvaiClient(CONVAI_KEY_39, url, max_retries=0) as client,
            pytest.raises(RedirectError) as caught,
        ):
            client.list_models()
        report = check_endpoint(f"{url}/v1", "m", ENDPOINT_KEY_41, wait=0)
    assert "/elsewhere%C2%9B2J%E2%80%AE" in str(caught.value)
    assert report.failure is not None and "/elsewhere%C2%9B2J%E2%80%AE" in report.failure.detail
    assert_nothing_acts(str(caught.value) + report.summary())


@pytest.mark.parametrize(
    "quoted",
    [
        "ab/cd&ef<gh>ij-q7",  # as sent
        "ab\\/cd&ef<gh>ij-q7",  # PHP's json_encode
        "ab/cd\\u0026ef\\u003cgh\\u003eij-q7",  # Go's encoding/json
        "ab/cd&amp;ef&lt;gh&gt;ij-q7",  # an HTML page
        "ab%2Fcd%26ef%3Cgh%3Eij-q7",  # a URL
    ],
)
def test_a_key_is_found_in_the_forms_servers_quote_it(quoted: str) -> None:
    remember("ab/cd&ef<gh>ij-q7")
    assert server_text(f"echo: {quoted}!") == "echo: [secret]!"


def test_a_fit_key_is_kept_out_of_messages_and_an_unfit_one_is_named_by_its_source() -> None:
    """The one rule the preflight, `health`, the commands and the Convai key all apply."""
    key = "ek-Zq81-fit-endpoint-key-4471"
    assert fit_key(key, "ENDPOINT_API_KEY") == key
    assert key not in redact(f"the server said {key}")
    with pytest.raises(UnfitKeyError) as caught:
        fit_key(" ek-padded-key-9 ", "ENDPOINT_API_KEY", "export it without it")
    said = str(caught.value)
    assert said.startswith("ENDPOINT_API_KEY ") and said.endswith(": export it without it")
    assert "ek-padded-key-9" not in said

"""The account is part of a model's identity: another account's key never drops a model."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.fingerprints import fingerprint, is_fingerprint_of
from convai_provider.resources.key_identity import KEY_FINGERPRINT
from testkit.convai import CONVAI_KEY, declare, live, stack_config, turbo
from testkit.engine import Engine, ProviderError

OTHER_ACCOUNT_KEY = "convai-other-account-key-2b7d41"
NOT_THE_KEY = "is not the one this model was created with"


# The fingerprint ----------------------------------------------------------------------------------


def test_a_fingerprint_tells_the_key_without_holding_any_of_it() -> None:
    recorded = fingerprint(CONVAI_KEY)
    assert is_fingerprint_of(CONVAI_KEY, recorded) is True
    assert is_fingerprint_of(OTHER_ACCOUNT_KEY, recorded) is False
    assert CONVAI_KEY not in recorded
    assert not any(CONVAI_KEY[i : i + 6] in recorded for i in range(len(CONVAI_KEY) - 5))


@pytest.mark.parametrize(
    "recorded",
    [
        None,
        "",
        42,
        "sha256$abc",
        "scrypt$16384$8$1$!!!$AAAA",
        "scrypt$16385$8$1$c2FsdA==$" + "A" * 44,  # n not a power of two
        "scrypt$1048576$32$1$c2FsdA==$" + "A" * 44,  # asks for 4 GiB: refused, not computed
    ],
)
def test_anything_else_is_not_a_fingerprint(recorded: object) -> None:
    assert is_fingerprint_of(CONVAI_KEY, recorded) is None


def test_workers_asking_for_one_fingerprint_together_compute_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first wave of an `up`: four creates fingerprint the same key at once. Each scrypt
    costs ~0.1 s of CPU and 16 MiB; the three others wait for the first one's."""
    computed: list[str] = []
    real_scrypt = hashlib.scrypt

    def slow_scrypt(password: bytes, **params: Any) -> bytes:
        computed.append(password.decode())
        threading.Event().wait(0.2)  # long enough for the other workers to ask meanwhile
        return real_scrypt(password, **params)

    monkeypatch.setattr(hashlib, "scrypt", slow_scrypt)
    key = "convai-key-asked-for-by-four-workers-7c1e"
    together = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        together.wait()
        results.append(fingerprint(key))

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert computed == [key]
    assert len(set(results)) == 1 and is_fingerprint_of(key, results[0]) is True


# Through the provider server ----------------------------------------------------------------------


@pytest.fixture
def engine(convai: EmulatorProcess) -> Engine:
    engine = Engine(stack_config(convai))
    engine.up(declare(a=turbo(model_group_name="a", display_name="A"), b=turbo()))
    return engine


def with_key(convai: EmulatorProcess, key: str) -> dict[str, Any]:
    return {**stack_config(convai), "convai:apiKey": key}


def test_create_records_the_fingerprint_of_its_key(engine: Engine) -> None:
    for entry in engine.state.values():
        assert is_fingerprint_of(CONVAI_KEY, entry.outputs[KEY_FINGERPRINT]) is True


def test_refresh_with_another_accounts_key_drops_nothing(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.config = with_key(convai, OTHER_ACCOUNT_KEY)
    with pytest.raises(ProviderError) as caught:
        engine.refresh()
    assert NOT_THE_KEY in caught.value.details and "State keeps the model" in caught.value.details
    assert OTHER_ACCOUNT_KEY not in caught.value.details
    assert sorted(engine.state) == ["a", "b"]
    engine.config = stack_config(convai)
    engine.refresh()
    assert sorted(engine.state) == ["a", "b"]


def test_destroy_with_another_accounts_key_drops_nothing(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.config = with_key(convai, OTHER_ACCOUNT_KEY)
    with pytest.raises(ProviderError, match=NOT_THE_KEY):
        engine.destroy()
    assert sorted(engine.state) == ["a", "b"]
    assert sorted(live(convai)) == ["a", "turbo"]


def test_a_model_deleted_by_hand_is_still_dropped_with_the_key_it_was_created_with(
    engine: Engine, convai: EmulatorProcess
) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("a")
    engine.refresh()
    assert sorted(engine.state) == ["b"]


def test_a_rotated_key_that_lists_the_model_is_recorded_silently(
    engine: Engine, convai: EmulatorProcess
) -> None:
    """A rotation: the key in use differs from the one recorded, and Convai lists the model
    under it (the same account). State recorded the old key; the refresh records the new one."""
    engine.state["b"].outputs[KEY_FINGERPRINT] = fingerprint("the-old-rotated-key")
    engine.refresh()
    assert sorted(engine.state) == ["a", "b"]
    assert is_fingerprint_of(CONVAI_KEY, engine.state["b"].outputs[KEY_FINGERPRINT]) is True
    assert KEY_FINGERPRINT not in engine.state["b"].inputs


@pytest.mark.parametrize("recorded", ["another key's", "none (an earlier version's state)"])
@pytest.mark.parametrize("operation", ["refresh", "destroy"])
def test_a_model_missing_under_a_key_not_recorded_for_it_stays_in_state(
    engine: Engine, convai: EmulatorProcess, recorded: str, operation: str
) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("turbo")
    outputs = engine.state["b"].outputs
    outputs[KEY_FINGERPRINT] = fingerprint("the-old-rotated-key") if recorded[0] == "a" else None
    with pytest.raises(ProviderError, match="pulumi state delete"):
        getattr(engine, operation)()
    assert "b" in engine.state


def test_an_update_under_another_accounts_key_says_so_rather_than_only_not_found(
    engine: Engine, convai: EmulatorProcess
) -> None:
    """A mistyped convai:apiKey (#21's trial): the update's 404 is about the key, not the model."""
    engine.config = with_key(convai, OTHER_ACCOUNT_KEY)
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(a=turbo(model_group_name="a", display_name="A, renamed"), b=turbo()))
    assert "HTTP 404" in caught.value.details
    assert NOT_THE_KEY in caught.value.details and "State keeps the model" in caught.value.details
    assert OTHER_ACCOUNT_KEY not in caught.value.details
    assert sorted(engine.state) == ["a", "b"]

"""The pickling workaround says, once, whether a newer Pulumi SDK still needs it."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest

from convai_provider.resources import pulumi_pickling
from convai_provider.resources.pulumi_pickling import provider_serialization

ORIGINAL = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]


@pytest.fixture
def newer_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pulumi_pickling, "sdk_version", lambda: (9, 0, 0))
    monkeypatch.setattr(pulumi_pickling, "_checked_sdk", False)


def leak(*_: Any) -> None:
    """What serialize_provider leaves behind in pulumi 3.272."""


def test_a_newer_sdk_that_still_leaks_is_reported_once_and_undone(
    newer_sdk: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "convai_provider")
    for _ in range(3):
        with provider_serialization():
            pickle._Pickler._batch_setitems = leak  # type: ignore[attr-defined]
        assert pickle._Pickler._batch_setitems is ORIGINAL  # type: ignore[attr-defined]
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1 and "still leaves pickle wrapped" in reports[0]


def test_a_newer_sdk_without_the_leak_says_the_workaround_can_go(
    newer_sdk: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "convai_provider")
    with provider_serialization():
        pass
    assert ["can be removed" in r.getMessage() for r in caplog.records] == [True]


def test_the_sdk_version_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every resource a program declares passes here: a thousand models, one look."""
    looks: list[tuple[int, ...]] = []

    def counted_version() -> tuple[int, ...]:
        looks.append(pulumi_pickling.WRITTEN_FOR)
        return pulumi_pickling.WRITTEN_FOR

    monkeypatch.setattr(pulumi_pickling, "sdk_version", counted_version)
    monkeypatch.setattr(pulumi_pickling, "_checked_sdk", False)
    for _ in range(3):
        with provider_serialization():
            pass
    assert len(looks) == 1


def test_the_sdk_it_was_written_for_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "convai_provider")
    assert pulumi_pickling.sdk_version() <= pulumi_pickling.WRITTEN_FOR
    with provider_serialization():
        pickle._Pickler._batch_setitems = leak  # type: ignore[attr-defined]
    assert pickle._Pickler._batch_setitems is ORIGINAL  # type: ignore[attr-defined]
    assert caplog.records == []

"""How the tests find the programs they run for real (testkit/tools.py): a bin directory named
by its variable or found by its installer, and a missing one skipping the test, or failing it
under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.kube import NoKubeError
from testkit.postgres import NoPostgresError
from testkit.pulumi_cli import NoPulumiError
from testkit.tools import MissingToolError, cached_bin, required

UNSET = "TESTKIT_TOOLS_TEST_UNSET_BIN"


def test_the_variable_names_the_bin_directory_without_asking_the_installer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(UNSET, str(tmp_path))
    assert cached_bin(UNSET, "no-such-installer", NoPulumiError, "thing") == tmp_path


def test_without_the_variable_the_installer_finds_the_cached_build(
    monkeypatch: pytest.MonkeyPatch, cli_bin: Path
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    found = cached_bin(UNSET, "install-pulumi", NoPulumiError, "Pulumi CLI")
    assert (found / "pulumi").is_file()


def test_an_installer_that_finds_nothing_is_the_kind_of_missing_named_with_its_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    with pytest.raises(NoKubeError, match=r"^no control plane: .*no-such-installer"):
        cached_bin(UNSET, "no-such-installer", NoKubeError, "control plane")


@pytest.mark.parametrize("missing", [NoPulumiError, NoKubeError, NoPostgresError])
def test_a_missing_program_skips_the_test_outside_ci(
    monkeypatch: pytest.MonkeyPatch, missing: type[MissingToolError]
) -> None:
    monkeypatch.delenv("CI", raising=False)

    def find() -> Path:
        raise missing("no thing: install it")

    with pytest.raises(BaseException) as outcome:  # a skip or a failure alike, to tell apart
        required(find, "the thing tests")
    assert outcome.type is pytest.skip.Exception
    assert str(outcome.value) == "no thing: install it"


def test_a_missing_program_fails_the_test_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")

    def find() -> Path:
        raise NoPostgresError("no thing: install it")

    with pytest.raises(BaseException) as outcome:
        required(find, "the thing tests")
    assert outcome.type is pytest.fail.Exception
    assert str(outcome.value) == "no thing: install it (CI must run the thing tests)"


def test_other_errors_are_not_taken_for_a_missing_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)

    def find() -> Path:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        required(find, "the thing tests")


def test_what_is_found_is_returned(tmp_path: Path) -> None:
    assert required(lambda: tmp_path, "the thing tests") == tmp_path

"""docs/reference.md is what the schemas say: its tables are generated from the pydantic models,
and the committed page is the generated one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from convai_provider.resources.field_docs import on_change
from convai_stack import reference
from convai_stack.reference import COMMAND, PAGE, TABLES, Table, generated, table, type_of
from convai_stack.stack_config import StackConfig, VllmEndpoint


def test_the_committed_page_is_the_generated_one() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert generated(page) == page, f"docs/reference.md is stale: run `{COMMAND}` and commit it"


def test_the_command_checks_the_committed_page() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "convai_stack.reference", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_a_stale_page_is_found_and_named_with_the_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stale = PAGE.read_text(encoding="utf-8").replace("| `cache_size` |", "| `cache_sized` |")
    page = tmp_path / "reference.md"
    page.write_text(stale, encoding="utf-8")
    monkeypatch.setattr(reference, "PAGE", page)
    assert reference.main(["--check"]) == 1
    assert f"run `{COMMAND}`" in capsys.readouterr().err
    assert reference.main([]) == 0
    assert page.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_every_field_of_every_stack_model_is_in_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for name, spec in TABLES.items():
        for field in spec.model.model_fields:
            assert f"| `{spec.key(field)}` |" in page, f"{name}.{field} is not in the page"
    assert "| `convai-models:requireImageDigest` | boolean | no | `false` |" in page


def test_a_table_shows_type_default_requiredness_change_and_doc() -> None:
    rows = table(Table(VllmEndpoint, "field")).splitlines()
    assert (
        "| `replicas` | integer, at least 1, at most 64 | no | `1` | in place | Each replica owns"
        in "\n".join(rows)
    )
    cache = next(r for r in rows if r.startswith("| `cache_size`"))
    assert "| `100Gi` | replaces the StatefulSet" in cache
    revision = next(r for r in rows if r.startswith("| `revision`"))
    assert revision.startswith("| `revision` | string | yes |  |")
    tolerations = next(r for r in rows if r.startswith("| `tolerations`"))
    assert "`[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]`" in tolerations
    keys = table(TABLES["StackConfig"]).splitlines()
    assert keys[2].startswith("| `convai-models:endpoints` | list of [external-endpoint]")


def test_a_field_without_a_doc_is_refused_naming_it() -> None:
    class Undocumented(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)

        documented: int = 1
        """Has a doc."""
        bare: int = 2

    with pytest.raises(reference.ReferenceError, match="document bare with a docstring"):
        table(Table(Undocumented, "field"))


def test_a_missing_or_unknown_marker_is_refused_naming_it() -> None:
    page = PAGE.read_text(encoding="utf-8")
    without = page.replace("<!-- generated: GatewayDataplane -->", "")
    with pytest.raises(
        reference.ReferenceError, match="tables have no markers \\(GatewayDataplane\\)"
    ):
        generated(without)
    extra = page + "<!-- generated: Nothing -->\n<!-- end generated -->\n"
    with pytest.raises(reference.ReferenceError, match="markers name no table \\(Nothing\\)"):
        generated(extra)


def test_types_read_as_words() -> None:
    assert type_of(Literal["a", "b"]) == "`a` or `b`"
    assert type_of(dict[str, str]) == "map of string to string"
    assert type_of(list[int] | None) == "list of integer"
    assert type_of(StackConfig.model_fields["models"].annotation) == "list of [model](#model)"


def test_a_change_note_is_shown_and_a_plain_field_updates_in_place() -> None:
    class Model(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)

        name: str = Field(json_schema_extra=on_change("replaces it", replaces=True))
        """The name."""
        size: int = 1
        """The size."""

    rows = table(Table(Model, "field")).splitlines()
    assert rows[2] == "| `name` | string | yes |  | replaces it | The name. |"
    assert rows[3] == "| `size` | integer | no | `1` | in place | The size. |"

"""matching: the one rule by which a declaration and what Convai holds are compared."""

from __future__ import annotations

from pulumi.output import Unknown

from convai_provider.api.matching import as_declared, differences, matches
from convai_provider.api.wire import PrivateModel, RegisterRequest

DECLARED = RegisterRequest(
    model_group_name="g", model_name="m", api_key="sk-1", is_uncensored=False
)


def test_a_field_left_out_matches_whatever_convai_holds() -> None:
    live = PrivateModel(model_group_name="g", model_name="m", display_name="Convai's own label")
    assert matches(live, DECLARED)


def test_a_register_without_base_url_matches_convais_default_only() -> None:
    assert as_declared(DECLARED)["base_url"] == "https://api.openai.com/v1"
    elsewhere = PrivateModel(model_group_name="g", model_name="m", base_url="https://x/v1")
    assert not matches(elsewhere, DECLARED)


def test_each_differing_field_is_named_with_both_values() -> None:
    live = PrivateModel(model_group_name="g", model_name="other", is_uncensored=True)
    found = differences(live.model_dump(), as_declared(DECLARED))
    assert [str(d) for d in found] == [
        "model_name: declared 'm', Convai has 'other'",
        "is_uncensored: declared False, Convai has True",
    ]


def test_a_value_unknown_at_plan_time_differs() -> None:
    unknown = Unknown()  # type: ignore[no-untyped-call]
    found = differences({"display_name": "a"}, {"display_name": unknown}, ["display_name"])
    assert [d.field for d in found] == ["display_name"]

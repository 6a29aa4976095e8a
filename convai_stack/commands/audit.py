"""`audit`: how a stack's declared models compare with what Convai holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from convai_provider.api.matching import differences
from convai_provider.api.wire import PrivateModel
from convai_stack.stack_config import StackConfig

KEY_NOT_COMPARABLE = "api_key cannot be compared: Convai never returns endpoint keys"


@dataclass(frozen=True)
class Expected:
    """What Convai should hold for one declared model."""

    model_group_name: str
    model_name: str
    base_url: str
    display_name: str | None
    is_uncensored: bool


def accounts_in_use(stack: StackConfig) -> list[str | None]:
    """The accounts a stack's models live in (None: the default account), the default first; a
    stack without models, the default account's."""
    aliases = {m.account for m in stack.models}
    return [None] * (None in aliases or not aliases) + sorted(a for a in aliases if a is not None)


def expected_models(stack: StackConfig, account: str | None = None) -> dict[str, Expected]:
    """What Convai should hold in `account` (None: the default account) for the stack."""
    expected = {}
    for model in stack.models:
        if model.account != account:
            continue
        base_url, model_name = stack.endpoint(model.endpoint).served_as
        expected[model.model_group_name] = Expected(
            model.model_group_name, model_name, base_url, model.display_name, model.is_uncensored
        )
    return expected


@dataclass(frozen=True)
class FieldDrift:
    model_group_name: str
    field: str
    declared: Any
    in_convai: Any


@dataclass
class Audit:
    stack: str
    account: str | None = None
    """The account audited: an alias of convai:accounts, None for the default account."""
    unmanaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    drift: list[FieldDrift] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    note: str = KEY_NOT_COMPARABLE

    @property
    def clean(self) -> bool:
        return not (self.unmanaged or self.missing or self.drift)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def audit(
    stack_name: str, stack: StackConfig, live: list[PrivateModel], account: str | None = None
) -> Audit:
    """The stack's models of `account` against what Convai lists there (`live`)."""
    expected = expected_models(stack, account)
    held = {m.model_group_name: m for m in live}
    result = Audit(stack_name, account)
    result.unmanaged = sorted(set(held) - set(expected))
    result.missing = sorted(set(expected) - set(held))
    for group in sorted(set(expected) & set(held)):
        drift = _drift(expected[group], held[group])
        result.drift.extend(drift)
        if not drift:
            result.in_sync.append(group)
    return result


def _drift(expected: Expected, live: PrivateModel) -> list[FieldDrift]:
    return [
        FieldDrift(expected.model_group_name, d.field, d.declared, d.held)
        for d in differences(live.model_dump(), asdict(expected))
    ]

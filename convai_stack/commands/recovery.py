"""After an interrupted `pulumi up`: settle the creates Pulumi recorded as pending.

The engine writes a pending create into state before it calls a provider's create and removes it
when the create returns, so a record that survives means the CLI died while the create was in
flight: Convai may or may not hold the model. A dynamic provider never sees that record (`create`
gets only its inputs), and Pulumi 3.274's `pulumi refresh --import-pending-creates` drops it
without reading the resource. So the record is settled here, from `pulumi stack export`:

- Convai holds a model of that name exactly as the record declares it: this stack registered it;
  it becomes a resource in state (`pulumi refresh` then fills in what Convai computed), in the
  place of the resource it replaces when the CLI was killed during a replacement.
- Convai holds no model of that name: the create never reached Convai; the record is dropped and
  the next `pulumi up` registers it.
- Convai holds a different model of that name: perhaps someone else's; the model is reported as a
  conflict, naming what differs, for a person to decide (`adopt_existing` if it is this stack's,
  or another name). `pulumi stack import` keeps no pending operation, so importing the settled
  state forgets that record: decide first.

A character binding's pending create is dropped: the next `pulumi up` sets the character again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_provider.api.accounts import ACCOUNT_KEY
from convai_provider.api.matching import LISTED_FIELDS, as_declared, differences
from convai_provider.api.wire import PrivateModel
from convai_provider.resources.type_tokens import CHARACTER_TYPE_TOKEN, TYPE_TOKEN

CREATING = "creating"


class RecoveryError(Exception):
    """The exported state is not what `pulumi stack export` writes."""


@dataclass
class Recovery:
    state: dict[str, Any]
    """The deployment to give `pulumi stack import`."""
    adopted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    """Resource name -> the fields in which Convai's model differs from the record."""
    elsewhere: dict[str, str | None] = field(default_factory=dict)
    """Resource name -> the account (None: the default one) of a pending create left for a run
    with that account: importing before it is settled would forget it."""

    @property
    def settled(self) -> bool:
        return not self.conflicts and not self.elsewhere


def recover_pending_creates(
    exported: Any, live: Mapping[str, PrivateModel], account: str | None = None
) -> Recovery:
    """`exported`: what `pulumi stack export` printed; `live`: Convai's models by group name in
    `account` (None: the default account). Pending creates of another account are left as they
    are, for a run with that account (`--account`)."""
    state = copy.deepcopy(exported)
    deployment = checked_export(state)
    recovery = Recovery(state)
    kept: list[dict[str, Any]] = []
    for operation in deployment.get("pending_operations") or []:
        resource = operation["resource"]
        name = str(resource.get("urn", "")).rsplit("::", 1)[-1]
        kind = resource.get("type")
        if operation.get("type") != CREATING or kind not in (TYPE_TOKEN, CHARACTER_TYPE_TOKEN):
            kept.append(operation)
            continue
        owner = (resource.get("inputs") or {}).get(ACCOUNT_KEY)
        if owner != account:
            kept.append(operation)
            recovery.elsewhere[name] = owner
            continue
        existing = _existing(resource, live) if kind == TYPE_TOKEN else None
        conflicts = _differences(existing, resource["inputs"]) if existing else []
        resources = deployment.get("resources") or []  # null in a hand-made export
        deployment["resources"] = resources
        if existing is not None and not conflicts:
            conflicts = _place(resources, _created(resource, existing))
        if existing is None:
            recovery.dropped.append(name)
        elif not conflicts:
            recovery.adopted.append(name)
        else:
            kept.append(operation)
            recovery.conflicts[name] = conflicts
    deployment["pending_operations"] = kept
    return recovery


def _place(resources: list[Any], created: dict[str, Any]) -> list[str]:
    """Put the settled resource into state, where its URN allows; else say why not.

    A CLI killed during a delete-before-replace leaves the old resource in state marked
    `pendingReplacement` (Convai deleted it) next to the replacement's pending create: the
    settled replacement takes its place, so no URN is ever in state twice (`pulumi stack
    import` refuses that). A live resource of that URN is not replaced: a person decides.
    """
    same = [
        i
        for i, r in enumerate(resources)
        if isinstance(r, dict) and r.get("urn") == created["urn"] and not r.get("delete")
    ]
    if not same:
        resources.append(created)
        return []
    if len(same) == 1 and resources[same[0]].get("pendingReplacement"):
        resources[same[0]] = created
        return []
    return ["state already holds a resource of this URN that is not pending replacement"]


def _existing(resource: Mapping[str, Any], live: Mapping[str, PrivateModel]) -> PrivateModel | None:
    group = (resource.get("inputs") or {}).get("model_group_name")
    return live.get(group) if isinstance(group, str) else None


def _created(resource: Mapping[str, Any], model: PrivateModel) -> dict[str, Any]:
    """The resource as a finished create records it; refresh fills in Convai's computed fields."""
    return {**resource, "id": model.model_group_name, "outputs": copy.deepcopy(resource["inputs"])}


def _differences(live: PrivateModel, inputs: Mapping[str, Any]) -> list[str]:
    """Fields the record declares otherwise than Convai holds them (the key is a secret in state
    and never compared; a display name left to Convai matches any)."""
    declared = {"is_uncensored": False} | {
        f: inputs[f] for f in LISTED_FIELDS if inputs.get(f) is not None
    }
    if not all(isinstance(value, str | bool) for value in declared.values()):
        return ["the record is not a valid declaration"]
    return [str(d) for d in differences(live.model_dump(), as_declared(declared))]


def checked_export(exported: Any) -> dict[str, Any]:
    """The deployment of `exported`, once every part of it recover reads has the shape `pulumi
    stack export` writes; else a RecoveryError naming the first part that does not. Checked
    before Convai is asked anything."""
    deployment = exported.get("deployment") if isinstance(exported, dict) else None
    if not isinstance(deployment, dict):
        raise RecoveryError(
            "this is not the output of `pulumi stack export` (no `deployment` object)"
        )
    for key in ("resources", "pending_operations"):
        if deployment.get(key) is not None and not isinstance(deployment[key], list):
            raise RecoveryError(f"deployment.{key} must be a list: is this a Pulumi export?")
    for index, operation in enumerate(deployment.get("pending_operations") or []):
        where = f"deployment.pending_operations[{index}]"
        resource = operation.get("resource") if isinstance(operation, dict) else None
        if not isinstance(resource, dict):
            raise RecoveryError(f"{where} has no resource object: is this a Pulumi export?")
        for key in ("urn", "type"):
            if not isinstance(resource.get(key), str):
                raise RecoveryError(f"{where}.resource.{key} must be a string")
        if resource.get("inputs") is not None and not isinstance(resource["inputs"], dict):
            raise RecoveryError(f"{where}.resource.inputs must be an object")
    return deployment

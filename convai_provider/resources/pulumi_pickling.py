"""Keep Pulumi's provider serialization from failing after about 985 dynamic resources.

`pulumi.dynamic.Resource` pickles its provider once per resource, with `serialize_provider`
(pulumi/pulumi, sdk/python/lib/pulumi/dynamic/dynamic.py), which wraps
`pickle._Pickler._batch_setitems` in a dict-sorting wrapper and never unwraps it (pulumi 3.272;
reported upstream as pulumi/pulumi#17803 for the same symptom). Each dynamic resource a program
declares adds one layer; past Python's recursion limit (about 985 resources) every further one
fails with RecursionError. Our resources put the method back after their provider is serialized,
so the wrapping never nests beyond one layer. The serialized bytes are unchanged: sorting once or
many times gives the same order.

Remove this module once a Pulumi release restores the method in `serialize_provider`'s `finally`
(as it already restores `pickle.Pickler`): on an SDK newer than the one this was written for, the
first resource checks whether the leak is still there and says once in the log.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

log = logging.getLogger("convai_provider")

WRITTEN_FOR = (3, 272, 0)
"""The pulumi SDK whose leak this works around."""

_UNNESTED_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
_checked_sdk = False


def sdk_version() -> tuple[int, ...]:
    return tuple(int(part) for part in version("pulumi").split(".")[:3] if part.isdigit())


@contextmanager
def provider_serialization() -> Iterator[None]:
    """Wrap the `super().__init__` of a dynamic resource."""
    try:
        yield
    finally:
        _report_on_newer_sdk()
        pickle._Pickler._batch_setitems = _UNNESTED_BATCH_SETITEMS  # type: ignore[attr-defined]


def _report_on_newer_sdk() -> None:
    """Once per process: reading the installed SDK's version costs ~0.2 ms, a thousand times in
    a program of a thousand models."""
    global _checked_sdk  # noqa: PLW0603 - one check per process
    if _checked_sdk:
        return
    _checked_sdk = True
    if sdk_version() <= WRITTEN_FOR:
        return
    still_leaks = pickle._Pickler._batch_setitems is not _UNNESTED_BATCH_SETITEMS  # type: ignore[attr-defined]
    if still_leaks:
        log.info(
            "pulumi %s still leaves pickle wrapped after serializing a provider; "
            "convai_provider.resources.pulumi_pickling keeps undoing it",
            version("pulumi"),
        )
    else:
        log.info(
            "pulumi %s no longer leaves pickle wrapped after serializing a provider; "
            "convai_provider.resources.pulumi_pickling can be removed",
            version("pulumi"),
        )

"""Keep Pulumi's provider serialization from failing after about 985 dynamic resources.

`pulumi.dynamic.Resource` pickles its provider once per resource, with `serialize_provider`,
which wraps `pickle._Pickler._batch_setitems` in a dict-sorting wrapper and never unwraps it
(pulumi 3.272). Each dynamic resource a program declares adds one layer; past Python's recursion
limit (about 985 resources) every further one fails with RecursionError. Our resources put the
method back after their provider is serialized, so the wrapping never nests beyond one layer.
The serialized bytes are unchanged: sorting once or many times gives the same order.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager

_UNNESTED_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]


@contextmanager
def provider_serialization() -> Iterator[None]:
    """Wrap the `super().__init__` of a dynamic resource."""
    try:
        yield
    finally:
        pickle._Pickler._batch_setitems = _UNNESTED_BATCH_SETITEMS  # type: ignore[attr-defined]

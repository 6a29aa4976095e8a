"""Per-process state of the provider: one client and one shared listing per Convai account.

The provider object is pickled into Pulumi state, so it holds none of this; the provider server
process looks it up here at call time, keyed by the resolved settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .client import ConvaiClient
from .listing import SharedListing
from .settings import ConvaiSettings


@dataclass
class ConvaiRuntime:
    settings: ConvaiSettings
    client: ConvaiClient
    listing: SharedListing

    def deadline(self) -> float:
        """The instant the current operation must be done by."""
        return time.monotonic() + self.settings.operation_timeout


_RUNTIMES: dict[ConvaiSettings, ConvaiRuntime] = {}
_LOCK = threading.Lock()


def runtime_for(settings: ConvaiSettings) -> ConvaiRuntime:
    with _LOCK:
        runtime = _RUNTIMES.get(settings)
        if runtime is None:
            client = ConvaiClient(
                settings.api_key,
                settings.base_url,
                timeout=settings.request_timeout,
                max_retries=settings.max_retries,
            )
            listing = SharedListing(lambda deadline: client.list_models(deadline=deadline))
            runtime = ConvaiRuntime(settings, client, listing)
            _RUNTIMES[settings] = runtime
        return runtime

"""Per-process state of the provider: one Convai account (client and shared listing) per setting.

The provider object is pickled into Pulumi state, so it holds none of this; the provider server
process looks it up here at call time, keyed by the resolved settings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from convai_provider.api.account import ConvaiAccount
from convai_provider.api.client import ConvaiClient
from convai_provider.resources.settings import ConvaiSettings


@dataclass
class ConvaiRuntime:
    settings: ConvaiSettings
    account: ConvaiAccount


_RUNTIMES: dict[ConvaiSettings, ConvaiRuntime] = {}
_LOCK = threading.Lock()


def runtime_for(settings: ConvaiSettings) -> ConvaiRuntime:
    with _LOCK:
        runtime = _RUNTIMES.get(settings)
        if runtime is None:
            client = ConvaiClient(
                access=settings.access,
                timeout=settings.request_timeout,
                max_retries=settings.max_retries,
            )
            account = ConvaiAccount(client, operation_timeout=settings.operation_timeout)
            runtime = ConvaiRuntime(settings, account)
            _RUNTIMES[settings] = runtime
        return runtime

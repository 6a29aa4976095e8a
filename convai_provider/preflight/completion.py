"""A one-token chat completion: the call Convai makes for every character's reply."""

from __future__ import annotations

from typing import Any

from convai_provider.guards.documents import DocumentError, parse_json
from convai_provider.preflight.failures import status_failure
from convai_provider.preflight.probe import Probe
from convai_provider.preflight.report import EndpointCheck


def chat_completion(probe: Probe, model_name: str) -> list[EndpointCheck]:
    url = f"{probe.base_url}/chat/completions"
    body: dict[str, Any] = {
        "model": model_name,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    }
    response = probe.send("POST", url, with_key=True, json=body)
    if isinstance(response, EndpointCheck):
        return [response]
    if response.status_code != 200:
        return [status_failure("chat completion", response, url, probe.now())]
    try:
        reply = parse_json(response.content)
    except DocumentError:
        reply = None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not choices:
        return [
            EndpointCheck(
                "chat completion",
                False,
                f"{url} answered 200 without choices: not an OpenAI-compatible reply",
                final=True,
            )
        ]
    return [EndpointCheck("chat completion", True, "a 1-token completion succeeded")]

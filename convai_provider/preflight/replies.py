"""What OpenAI-compatible servers say: the message of an error body, the models a list names."""

from __future__ import annotations

import httpx

from convai_provider.guards.documents import DocumentError, parse_json
from convai_provider.guards.text import server_text


def error_message(response: httpx.Response) -> str:
    """The human message in any of the error bodies OpenAI-style servers send.

    vLLM's auth middleware: {"error": "Unauthorized"}; vLLM and OpenAI: {"error": {"message": ..}};
    older vLLM and SGLang: {"object": "error", "message": ..}; FastAPI defaults: {"detail": ..}.
    """
    try:
        body = parse_json(response.content)
    except DocumentError:
        return server_text(response.text.strip(), 200) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return server_text(error["message"])
        if isinstance(error, str):
            return server_text(error)
        for key in ("message", "detail"):
            if body.get(key):
                return server_text(body[key])
    return server_text(body, 200)


def served_models(response: httpx.Response) -> list[str] | None:
    """The ids of an OpenAI model list, or None when the reply is not one."""
    try:
        body = parse_json(response.content)
    except DocumentError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return None
    return [str(item.get("id")) for item in body["data"] if isinstance(item, dict)]


def listed_names(served: list[str], shown: int = 20) -> str:
    names = ", ".join(f"'{server_text(n, 100)}'" for n in served[:shown]) or "none"
    return names + (f" and {len(served) - shown} more" if len(served) > shown else "")

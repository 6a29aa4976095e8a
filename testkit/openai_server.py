"""A local OpenAI-compatible server for preflight tests, with the error shapes of real servers.

Flavours reproduce what clients meet in the field: vLLM's auth middleware answers 401
`{"error": "Unauthorized"}`; current vLLM wraps errors as `{"error": {"message", "type", ...}}`;
older vLLM and SGLang sent a flat `{"object": "error", "message", ...}`; OpenAI itself answers 401
with `{"error": {"message": "Incorrect API key provided...", "code": "invalid_api_key"}}`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


@dataclass
class EndpointBehaviour:
    flavour: str = "vllm"  # vllm | vllm-legacy | sglang | openai
    api_key: str | None = "sk-endpoint"
    more_keys: tuple[str, ...] = ()  # also accepted, as by vLLM's --api-key with several keys
    served: list[str] = field(default_factory=lambda: ["llama-3.1-8b"])
    ready_at: float = 0.0  # time.monotonic() before which every call answers 503
    loading: int = 0  # how many requests, the first ones, answer 503 (a model still loading)
    chat_status: int = 200
    chats: int = 0
    rate_limited: int = 0  # how many requests, the first ones, answer 429
    retry_after: str | None = None  # the Retry-After header of those 429s
    keyless_unready: int = 0  # how many requests without a key, the first ones, answer 503


def _error(
    flavour: str, status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> Response:
    if flavour in ("vllm-legacy", "sglang"):
        body: dict[str, Any] = {
            "object": "error",
            "message": message,
            "type": kind,
            "param": None,
            "code": status,
        }
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _unauthorized(flavour: str) -> Response:
    if flavour == "openai":
        body = {
            "error": {
                "message": "Incorrect API key provided: sk-***.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        return JSONResponse(body, status_code=401)
    return JSONResponse({"error": "Unauthorized"}, status_code=401)


def _still_loading(behaviour: EndpointBehaviour) -> bool:
    """Counts down `loading`: True for that many requests."""
    if behaviour.loading <= 0:
        return False
    behaviour.loading -= 1
    return True


def build_app(behaviour: EndpointBehaviour) -> Starlette:
    def gate(request: Request) -> Response | None:
        if behaviour.rate_limited > 0:
            behaviour.rate_limited -= 1
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
            return _error(behaviour.flavour, 429, "Too many requests", "RateLimitError", headers)
        if time.monotonic() < behaviour.ready_at or _still_loading(behaviour):
            return JSONResponse({"detail": "Service Unavailable"}, status_code=503)
        if behaviour.keyless_unready > 0 and "authorization" not in request.headers:
            behaviour.keyless_unready -= 1
            return JSONResponse({"detail": "Service Unavailable"}, status_code=503)
        accepted = {f"Bearer {key}" for key in (behaviour.api_key, *behaviour.more_keys)}
        if behaviour.api_key and request.headers.get("authorization") not in accepted:
            return _unauthorized(behaviour.flavour)
        return None

    async def models(request: Request) -> Response:
        refused = gate(request)
        if refused:
            return refused
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "vllm"}
            for name in behaviour.served
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        refused = gate(request)
        if refused:
            return refused
        body = await request.json()
        if body.get("model") not in behaviour.served:
            return _error(
                behaviour.flavour,
                404,
                f"The model `{body.get('model')}` does not exist.",
                "NotFoundError",
            )
        if behaviour.chat_status != 200:
            return _error(
                behaviour.flavour, behaviour.chat_status, "engine failure", "InternalServerError"
            )
        behaviour.chats += 1
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "p"},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def health(_: Request) -> Response:
        loading = time.monotonic() < behaviour.ready_at or _still_loading(behaviour)
        return Response(status_code=503 if loading else 200)

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


@contextmanager
def serve_endpoint(
    behaviour: EndpointBehaviour, tls: tuple[Path, Path] | None = None
) -> Iterator[str]:
    """Serve on a free loopback port in a thread; yields the base URL (`http://127.0.0.1:P/v1`,
    https with `tls=(key, certificate)`)."""
    with serve_app(build_app(behaviour), tls) as url:
        yield url


@contextmanager
def serve_app(app: ASGIApp, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """`serve_endpoint` for any ASGI app."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        ssl_keyfile=str(tls[0]) if tls else None,
        ssl_certfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()

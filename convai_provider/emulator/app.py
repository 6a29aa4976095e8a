"""The emulator's HTTP layer: Convai's wire shapes over the state model, and `/_emulator/`."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convai_provider.api.wire import (
    API_KEY_HEADER,
    CHARACTER_CREATE_PATH,
    CHARACTER_GET_PATH,
    CHARACTER_SUCCESS,
    CHARACTER_UPDATE_PATH,
    DEREGISTER_PATH,
    LIST_PATH,
    REGISTER_PATH,
    UPDATE_PATH,
    CharacterCreateRequest,
    CharacterGetRequest,
    CharacterUpdateRequest,
    DeregisterRequest,
    RegisterRequest,
    UpdateRequest,
)
from convai_provider.emulator.faults import FaultPlan, FaultRule
from convai_provider.emulator.store import (
    NEW_KEY_HEADER,
    ConvaiStore,
    InvalidInputError,
    StoreError,
)
from convai_provider.guards.documents import DocumentError, TooDeepError, parse_json
from convai_provider.guards.text import server_text
from convai_provider.guards.validation import describe_validation_error

log = logging.getLogger("convai_provider.emulator")

ADMIN_PREFIX = "/_emulator"


class InjectedDropError(Exception):
    """Raised after a committed request to make the server close the connection mid-reply."""


CONVAI_PATHS = frozenset(
    {
        REGISTER_PATH,
        UPDATE_PATH,
        DEREGISTER_PATH,
        LIST_PATH,
        CHARACTER_CREATE_PATH,
        CHARACTER_GET_PATH,
        CHARACTER_UPDATE_PATH,
    }
)
OTHER_PATHS = "(other paths)"

MAX_BODY = 1 << 20
"""Bytes a request body may hold: far more than any Convai request, far less than memory."""


class RequestCounter:
    """Requests per Convai path; every other path shares one entry, so a scan of a million
    paths costs one counter, not a million."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, path: str) -> None:
        with self._lock:
            self._counts[path if path in CONVAI_PATHS else OTHER_PATHS] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


def envelope_error(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"status": "error", "message": message, "transactionID": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status_code, headers=headers)


def envelope_success(payload: dict[str, Any]) -> Response:
    return JSONResponse({"status": "success", **payload, "transactionID": str(uuid.uuid4())})


class ConvaiEmulator:
    """Routes Convai paths to the store. Every reply of the model calls (register, update,
    deregister, list) carries a fresh transactionID, as does every error in their envelope; the
    character calls answer in their own older shapes, without one."""

    def __init__(self, store: ConvaiStore) -> None:
        self.store = store
        self.faults = FaultPlan()
        self.requests = RequestCounter()

    def asgi(self, served_name: str | None = None) -> ASGIApp:
        """The ASGI app. `served_name`: the --host it listens on, a name requests may give in
        their Host header besides the address they reached (`localhost` on loopback)."""
        routes = [
            Route(REGISTER_PATH, self.register, methods=["POST"]),
            Route(UPDATE_PATH, self.update, methods=["POST"]),
            Route(DEREGISTER_PATH, self.deregister, methods=["POST"]),
            Route(LIST_PATH, self.list_models, methods=["POST"]),
            Route(CHARACTER_CREATE_PATH, self.create_character, methods=["POST"]),
            Route(CHARACTER_GET_PATH, self.get_character, methods=["POST"]),
            Route(CHARACTER_UPDATE_PATH, self.update_character, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/reset", self.admin_reset, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/characters/orphaned", self.admin_orphans, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/faults", self.admin_faults, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/faults", self.admin_add_fault, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/faults", self.admin_clear_faults, methods=["DELETE"]),
            Route(f"{ADMIN_PREFIX}/stats", self.admin_stats, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/stats", self.admin_clear_stats, methods=["DELETE"]),
            Route(f"{ADMIN_PREFIX}/keys/rotate", self.admin_rotate_key, methods=["POST"]),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: _http_error,
                BodyTooLargeError: _body_too_large,
                Exception: _internal_error,
            },
        )
        # Starlette would answer `/llm-models/list/` with a redirect to the request's own Host
        # header, which is whatever the caller says: a path is served or it is a 404.
        app.router.redirect_slashes = False
        faulted = FaultMiddleware(app, self.faults, self.requests)
        return ServedHostsOnly(BodyLimit(faulted), served_name)

    # Convai endpoints -------------------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        return await self._handle(request, RegisterRequest, self._register)

    async def update(self, request: Request) -> Response:
        return await self._handle(request, UpdateRequest, self._update)

    async def deregister(self, request: Request) -> Response:
        return await self._handle(request, DeregisterRequest, self._deregister)

    async def list_models(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return _unauthenticated()
        models = self.store.models(account)
        return envelope_success({"models": [m.model_dump() for m in models], "count": len(models)})

    def _register(self, account: str, body: RegisterRequest) -> dict[str, Any]:
        model = self.store.register(account, body)
        return {
            "model_group_name": model.model_group_name,
            "model_name": model.model_name,
            "display_name": model.display_name,
            "message": f"Model '{model.model_group_name}' registered successfully",
        }

    def _update(self, account: str, body: UpdateRequest) -> dict[str, Any]:
        fields = self.store.update(account, body)
        return {
            "message": f"Model '{body.model_group_name}' updated successfully",
            "updated_fields": fields,
        }

    def _deregister(self, account: str, body: DeregisterRequest) -> dict[str, Any]:
        self.store.deregister(account, body.model_group_name)
        return {"message": f"Model '{body.model_group_name}' deregistered successfully"}

    async def _handle(self, request: Request, model: type[Any], action: Any) -> Response:
        account = self._account(request)
        if account is None:
            return _unauthenticated()
        try:
            body = await _parse_body(request, model)
            payload = action(account, body)
        except StoreError as refusal:
            return envelope_error(refusal.status_code, refusal.message)
        return envelope_success(payload)

    # Character API: older shapes, {"ERROR": ...} and {"API_ERROR": ...} -------------------------

    async def create_character(self, request: Request) -> Response:
        return await self._character_call(request, CharacterCreateRequest, self._create_character)

    async def get_character(self, request: Request) -> Response:
        return await self._character_call(request, CharacterGetRequest, self._get_character)

    async def update_character(self, request: Request) -> Response:
        return await self._character_call(request, CharacterUpdateRequest, self._update_character)

    def _create_character(self, account: str, body: CharacterCreateRequest) -> dict[str, Any]:
        return {
            "charID": self.store.create_character(
                account, body.charName, body.voiceType, body.backstory
            )
        }

    def _get_character(self, account: str, body: CharacterGetRequest) -> dict[str, Any]:
        return self.store.get_character(account, body.charID).model_dump()

    def _update_character(self, account: str, body: CharacterUpdateRequest) -> dict[str, Any]:
        self.store.set_character_model(account, body.charID, body.model_group_name)
        return dict(CHARACTER_SUCCESS)

    async def _character_call(self, request: Request, model: type[Any], action: Any) -> Response:
        account = self._account(request)
        if account is None:
            return JSONResponse({"API_ERROR": "Invalid API key provided."}, status_code=401)
        try:
            body = await _parse_body(request, model)
            payload = action(account, body)
        except StoreError as refusal:
            return JSONResponse({"ERROR": refusal.message}, status_code=400)
        return JSONResponse(payload)

    # Admin surface ----------------------------------------------------------------------------

    async def admin_reset(self, _: Request) -> Response:
        await asyncio.to_thread(self.store.reset)
        self.faults.clear()
        self.requests.clear()
        return JSONResponse({"status": "reset"})

    async def admin_orphans(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return _unauthenticated()
        orphans = await asyncio.to_thread(self.store.orphaned_characters, account)
        return JSONResponse({"characters": orphans})

    async def admin_add_fault(self, request: Request) -> Response:
        try:
            rule = FaultRule.model_validate(parse_json(await request.body()))
        except ValidationError as exc:
            return envelope_error(400, describe_validation_error(exc))
        except ValueError as exc:
            return envelope_error(400, str(exc))
        self.faults.add(rule)
        return JSONResponse({"status": "added", "rule": rule.model_dump()})

    async def admin_faults(self, _: Request) -> Response:
        return JSONResponse({"faults": self.faults.active()})

    async def admin_clear_faults(self, _: Request) -> Response:
        self.faults.clear()
        return JSONResponse({"status": "cleared"})

    async def admin_stats(self, _: Request) -> Response:
        return JSONResponse({"requests": self.requests.snapshot()})

    async def admin_clear_stats(self, _: Request) -> Response:
        self.requests.clear()
        return JSONResponse({"status": "cleared"})

    async def admin_rotate_key(self, request: Request) -> Response:
        """Regenerate an account's key: CONVAI-API-KEY names the account, NEW_KEY_HEADER gives
        its new key; the old one opens nothing from now on."""
        old_key = request.headers.get(API_KEY_HEADER, "").strip()
        new_key = request.headers.get(NEW_KEY_HEADER, "").strip()
        if not old_key or not new_key:
            return envelope_error(
                400, f"send the key in {API_KEY_HEADER} and its new one in {NEW_KEY_HEADER}"
            )
        try:
            await asyncio.to_thread(self.store.rotate_key, old_key, new_key)
        except StoreError as refusal:
            return envelope_error(refusal.status_code, refusal.message)
        return JSONResponse({"status": "rotated"})

    def _account(self, request: Request) -> str | None:
        """The account the request's key opens: None without a key, or with one rotated out."""
        key = request.headers.get(API_KEY_HEADER, "").strip()
        return self.store.account_of(key) if key else None


def _unauthenticated() -> Response:
    return envelope_error(401, f"Missing or invalid API key: send a valid {API_KEY_HEADER} header")


async def _parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.body()
    try:
        data = parse_json(raw) if raw.strip() else {}
    except TooDeepError as exc:
        raise InvalidInputError(f"Request body must be valid JSON: {exc}") from None
    except DocumentError:
        raise InvalidInputError("Request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInputError("Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


class BodyTooLargeError(Exception):
    pass


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"{message}: no endpoint at {request.url.path}"
    return envelope_error(exc.status_code, message, dict(exc.headers or {}))


async def _body_too_large(_: Request, __: Exception) -> Response:
    return envelope_error(413, f"Request body larger than {MAX_BODY >> 20} MiB")


async def _internal_error(_: Request, exc: Exception) -> Response:
    log.error("internal error: %s: %s", type(exc).__name__, exc)
    return envelope_error(500, "The emulator had an internal error; see its log")


class BodyLimit:
    """Refuses a request body over MAX_BODY with 413: at once when Content-Length says so,
    otherwise as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = Headers(scope=scope).get("content-length", "")
        if announced.isdigit() and int(announced) > MAX_BODY:
            reply = await _body_too_large(Request(scope), BodyTooLargeError())
            await reply(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise BodyTooLargeError()
            return message

        await self.app(scope, limited, send)


class ServedHostsOnly:
    """Every route answers only requests that name this emulator: their Host header is an
    address it serves on (the one the connection reached, `localhost` on loopback, or the name
    it was started with), and their Origin, if any, is one of those too.

    A web page cannot reach it by DNS rebinding (its requests name the page's own host) nor by
    posting from another origin (a browser sends Origin with every cross-origin POST), while
    curl, ConvaiClient and the tests, which name the address and send no Origin, are served."""

    def __init__(self, app: ASGIApp, served_name: str | None = None) -> None:
        self.app = app
        self.served_name = served_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await envelope_error(403, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        served = served_authorities(scope.get("server"), self.served_name)
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if host not in served:
            named = f"Host {server_text(host, 100)!r}" if host else "No Host header"
            return (
                f"{named} names none of the addresses this emulator serves on "
                f"({', '.join(sorted(served)) or 'none known'}): it answers requests to those "
                "only, so a web page cannot reach it through a name of its own (DNS rebinding)"
            )
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in {f"http://{a}" for a in served}:
            return (
                f"Origin {server_text(origin, 100)!r} is not this emulator: it serves local tools "
                "(curl, ConvaiClient, tests), not web pages"
            )
        return None


def served_authorities(server: Iterable[Any] | None, served_name: str | None = None) -> set[str]:
    """The `host:port` a request to this emulator may name: the address the connection reached
    (`server`, as ASGI gives it), `localhost` when that is a loopback address, and the name it was
    started with unless that is the any-address (0.0.0.0 is where a page reaches every port)."""
    if not server:
        return set()
    address, port = tuple(server)
    if port is None:
        return set()
    address = _unmapped(address)
    hosts = {f"[{address}]" if ":" in address else address}
    if _is_loopback(address):
        hosts.add("localhost")
    if served_name and not _is_unspecified(served_name):
        name = served_name.lower().strip("[]")
        hosts.add(f"[{name}]" if ":" in name else name)
    authorities = {f"{host}:{port}" for host in hosts}
    return authorities | hosts if port == 80 else authorities


def _unmapped(address: str) -> str:
    """An IPv4 client of a dual-stack socket reaches `::ffff:127.0.0.1`: it names 127.0.0.1."""
    try:
        mapped = getattr(ipaddress.ip_address(address), "ipv4_mapped", None)
    except ValueError:
        return address
    return str(mapped) if mapped is not None else address


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_unspecified(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_unspecified
    except ValueError:
        return False


class FaultMiddleware:
    """Applies the fault plan to Convai paths; the admin surface is never faulted."""

    def __init__(self, app: ASGIApp, faults: FaultPlan, requests: RequestCounter) -> None:
        self.app = app
        self.faults = faults
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        self.requests.add(path)
        decision = self.faults.decide(path)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.status is not None:
            headers = {"Retry-After": decision.retry_after} if decision.retry_after else None
            message = decision.message or f"Injected fault: HTTP {decision.status}"
            if path.startswith("/character/"):
                reply: Response = JSONResponse({"ERROR": message}, decision.status, headers)
            else:
                reply = envelope_error(decision.status, message, headers)
            await reply(scope, receive, send)
            return
        if decision.drop_after_commit:
            await self._commit_then_drop(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _commit_then_drop(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def discard(_: Message) -> None:
            return None

        await self.app(scope, receive, discard)
        # Headers promise a body that never comes; raising makes uvicorn close the transport.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        raise InjectedDropError(scope["path"])


class HideInjectedDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for each connection we drop on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedDropError)

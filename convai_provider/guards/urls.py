"""http(s) URLs: how they are parsed, and the rules for an endpoint's URL and for Convai's
(`api.access.convai_url_problem` applies these with Convai's example).

Both kinds share the rules (an http(s) URL with a host, no credentials, no query or fragment, no
spaces or control characters) and the words that explain them. They differ in two ways only:
the example a message shows, and where plain http may go. The Convai API key travels to Convai's
URL, so plain http is refused there beyond a loopback address (the emulator); an endpoint is the
user's own server, reached the way it serves.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

ENDPOINT_URL_EXAMPLE = "https://llm.example.com/v1"
"""An OpenAI-compatible API root, as an endpoint's base_url is given."""


def split_url(url: str) -> SplitResult | None:
    """`url`'s parts, or None when it cannot be parsed (an unclosed `[`, a port out of range)."""
    return None if unreadable(url) else urlsplit(url)


def unreadable(url: str) -> str | None:
    """Why `url` cannot be parsed at all, in the parser's words; None when it can."""
    try:
        parts = urlsplit(url)
        _ = parts.hostname, parts.port
    except ValueError as exc:
        return str(exc)
    return None


def endpoint_url_problem(url: str) -> str | None:
    """What keeps `url` from being an endpoint's API root (its base_url), or None."""
    return url_problem(url, example=ENDPOINT_URL_EXAMPLE, plain_http_to_loopback_only=False)


def refusal(setting: str, url: str, problem: str) -> str:
    """`setting` refused for `problem`, quoting its value without the credentials it may hold."""
    return f"{setting} {shown_url(url)!r} {problem}"


def shown_url(url: str) -> str:
    """`url` fit for a message: credentials in it are not repeated."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://…@{authority.rpartition('@')[2]}{slash}{path}"
    return url


def url_problem(url: str, *, example: str, plain_http_to_loopback_only: bool) -> str | None:
    """What keeps `url` from being an API root like `example`, or None. Each problem reads
    after the setting's name and value: `base_url 'x' must ...`."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # urlsplit would drop a tab or newline silently, and the server would be sent the rest.
        return "must not contain spaces or control characters"
    why = unreadable(url)
    if why is not None:
        return f"cannot be read as a URL ({why}): give one such as {example}"
    parts = split_url(url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        schemes = "https" if plain_http_to_loopback_only else "http(s)"
        return f"must be an {schemes} URL with a host, such as {example}"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials: the API key goes in a header"
    if parts.query or parts.fragment:
        return f"must not carry a query string or fragment: give the API root, such as {example}"
    if plain_http_to_loopback_only and parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            "must use https: plain http would send the Convai API key in clear (plain http is "
            "accepted only to a loopback address such as 127.0.0.1, for the emulator)"
        )
    return None


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the host."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_on_loopback(url: str) -> bool:
    """`url` is readable and its host is loopback (`is_loopback`)."""
    parts = split_url(url)
    return parts is not None and parts.hostname is not None and is_loopback(parts.hostname)


def api_root_hint(base_url: str) -> str | None:
    """OpenAI-compatible servers (vLLM, SGLang, OpenAI) serve their API under /v1: a base_url
    without it is usually the server's root, where Convai's calls find nothing. None when it
    ends in /v1."""
    root = base_url.rstrip("/")
    return None if root.endswith("/v1") else f"it usually ends in /v1 (try {root}/v1)"

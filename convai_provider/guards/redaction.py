"""Keys (the Convai API key, endpoint keys) kept out of messages.

As a last line of defence, every key this process has been given is replaced by `[secret]` in
whatever leaves the process: the operator commands' output, the provider's errors (which Pulumi
prints) and its log (`guards.text` applies it there). Keys shorter than `MIN_REDACTED`
characters are not replaced: they would blank out ordinary words (`EMPTY`, the keyless
placeholder), and protect nothing.

A message quotes a server's reply only in part, so redacting comes before cutting: a cut made
first can split an echoed key, and the piece before the cut no longer matches the key
(`redacted_prefix`).
"""

from __future__ import annotations

import html
import json
import threading
from urllib.parse import quote

SHOWN_AS = "[secret]"
MIN_REDACTED = 8

_forms: dict[str, list[str]] = {}
"""Every remembered key, with the forms in which a message may quote it (longest first)."""
_holding_block: dict[str, set[str]] = {}
"""Each `MIN_PIECE // 2`-character block of a form that starts at a multiple of it, with the
keys whose forms hold it: a message holding none of a key's blocks holds none of it to redact."""
_longest = 0
_lock = threading.Lock()


def remember(*keys: object) -> None:
    """Keys to keep out of every message from now on (non-strings are ignored). A provider
    remembers each endpoint key it is given: redacting costs the same with a thousand."""
    global _longest  # noqa: PLW0603 - the index below is process-wide, as the keys are
    for key in keys:
        if not isinstance(key, str) or len(key) < MIN_REDACTED or key in _forms:
            continue
        forms = _quoted_forms(key)
        with _lock:
            _forms[key] = forms
            for form in forms:
                for block in _blocks(form):
                    _holding_block.setdefault(block, set()).add(key)
            _longest = max(_longest, len(forms[0]))


def redact(text: str) -> str:
    """`text` with every remembered key replaced, in the forms messages quote it: as is, as
    repr() and json.dumps() escape it, and URL-encoded; and every piece of one of
    `MIN_PIECE` characters or more (a server that echoes a key split over two fields, or cut).
    Only the keys one of whose blocks `text` holds are looked for: any key of at least
    `MIN_REDACTED` characters, and any piece of `MIN_PIECE`, holds one."""
    with _lock:
        keys = sorted(_keys_with_a_block_in(text), key=len, reverse=True)
        quoted = [_forms[key] for key in keys]
    for forms in quoted:
        for form in forms:
            if form in text:
                text = text.replace(form, SHOWN_AS)
        for form in forms:  # the whole key first, in every form: a form shares pieces with others
            text = _without_pieces(text, form)
    return text


MIN_PIECE = 12
"""Characters of a key's piece that is redacted wherever it stands. Shorter pieces are left: a
key made of words (`sk-endpoint`) shares them with ordinary text, and a random key's piece that
short gives too little of it to matter."""


def _without_pieces(text: str, form: str) -> str:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(_piece_spans(text, form, MIN_PIECE)):
        if merged and start <= merged[-1][1]:  # overlapping or touching: one [secret]
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    shown, end = [], 0
    for start, stop in merged:
        shown += [text[end:start], SHOWN_AS]
        end = stop
    return "".join([*shown, text[end:]])


def _piece_spans(text: str, form: str, least: int) -> list[tuple[int, int]]:
    """Where `text` holds a run of at least `least` consecutive characters of `form`. Any such
    run holds one of `form`'s blocks of `least // 2` characters that start at a multiple of it,
    so only those are searched for (at C speed), and each hit grown both ways."""
    block = least // 2
    spans: list[tuple[int, int]] = []
    for index, chunk in enumerate(_blocks(form, block)):
        start = index * block
        at = text.find(chunk)
        while at != -1:
            left = 0
            while left < min(at, start) and text[at - left - 1] == form[start - left - 1]:
                left += 1
            right = block
            while (
                at + right < len(text)
                and start + right < len(form)
                and text[at + right] == form[start + right]
            ):
                right += 1
            if left + right >= least:
                spans.append((at - left, at + right))
            at = text.find(chunk, at + 1)
    return spans


def redacted_prefix(text: str, length: int, *, more_follows: bool = False) -> tuple[str, bool]:
    """The first `length` characters of `text` once its keys are redacted, and whether anything
    was cut off. No cut splits a key: redacting comes first, over enough of `text` that the
    characters kept cannot be the start of a key the window's end splits. `more_follows`:
    `text` is itself the start of something longer (its end may split a key)."""
    margin = _longest_form()
    size = length + margin
    while True:
        window = text[:size]
        complete = len(window) == len(text) and not more_follows
        shown = redact(window)
        if not complete:
            shown = shown[: max(len(shown) - margin, 0)]
        if len(shown) > length or len(window) == len(text):
            return shown[:length], len(shown) > length or not complete
        size *= 2


def _longest_form() -> int:
    """Characters of the longest form in which a remembered key may be quoted (0: none)."""
    with _lock:
        return _longest


_BLOCK = MIN_PIECE // 2


def _blocks(form: str, block: int = _BLOCK) -> list[str]:
    """The `block`-character pieces of `form` that start at a multiple of `block`."""
    return [form[start : start + block] for start in range(0, len(form) - block + 1, block)]


def _keys_with_a_block_in(text: str) -> set[str]:
    found: set[str] = set()
    if not _holding_block:
        return found
    for start in range(len(text) - _BLOCK + 1):
        holders = _holding_block.get(text[start : start + _BLOCK])
        if holders:
            found |= holders
    return found


def _go_json(quoted: str) -> str:
    return quoted.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _quoted_forms(key: str) -> list[str]:
    forms = {
        key,
        repr(key)[1:-1],
        ascii(key)[1:-1],
        json.dumps(key)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),  # as PHP's json_encode writes it
        _go_json(json.dumps(key)[1:-1]),  # as Go's encoding/json writes it
        repr(key.encode("utf-8", "replace"))[2:-1],
        quote(key, safe=""),
        html.escape(key),  # an HTML error page quoting a header
        html.escape(key, quote=False),
    }
    return sorted(forms, key=len, reverse=True)

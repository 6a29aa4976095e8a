"""A fingerprint of a key: whether a key is the one seen before, without anything that gives
it back.

`scrypt$<n>$<r>$<p>$<salt>$<digest>` (salt and digest in base64): a salted, memory-hard hash. A
fingerprint tells whether a key given now is the key fingerprinted then; it cannot be reversed,
and trying keys against it costs ~0.1 s and 16 MiB each. Fingerprints made in one process share
a random salt, so a state of a thousand models costs one scrypt per process, not a thousand; and
one, not four, when the provider's four workers ask for the same fingerprint at once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import threading

SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_DIGEST_BYTES = 32
_MAX_MEMORY = 64 * 1024 * 1024
"""A recorded fingerprint asking for more memory than this (128 * n * r bytes) is not one we
made: refused, so state cannot make a provider process spend minutes or gigabytes on it."""

_PROCESS_SALT = os.urandom(16)


def fingerprint(key: str) -> str:
    return _format(_N, _R, _P, _PROCESS_SALT, _digest(key, _PROCESS_SALT, _N, _R, _P))


def is_fingerprint_of(key: str, recorded: object) -> bool | None:
    """Whether `recorded` is a fingerprint of `key`; None when it is not a fingerprint at all."""
    parsed = _parse(recorded)
    if parsed is None:
        return None
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_digest(key, salt, n, r, p), digest)


def _digest(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """Computed once per process for the same arguments, even when asked for concurrently: the
    first wave of a big `up` is four creates asking for the same key's fingerprint together."""
    with _LOCKS_LOCK:
        lock = _digest_lock(key, salt, n, r, p)
    with lock:
        return _computed_digest(key, salt, n, r, p)


_LOCKS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _digest_lock(key: str, salt: bytes, n: int, r: int, p: int) -> threading.Lock:
    """One lock per digest: different ones (a refresh meeting several salts) run in parallel."""
    return threading.Lock()


@functools.lru_cache(maxsize=64)
def _computed_digest(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        key.encode(), salt=salt, n=n, r=r, p=p, dklen=_DIGEST_BYTES, maxmem=2 * _MAX_MEMORY
    )


def _format(n: int, r: int, p: int, salt: bytes, digest: bytes) -> str:
    encode = base64.b64encode
    return f"{SCHEME}${n}${r}${p}${encode(salt).decode()}${encode(digest).decode()}"


def _parse(recorded: object) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(recorded, str):
        return None
    parts = recorded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    power_of_two = n > 1 and n & (n - 1) == 0
    if not (power_of_two and r > 0 and 0 < p <= 4 and 128 * n * r <= _MAX_MEMORY):
        return None
    if not salt or len(digest) != _DIGEST_BYTES:
        return None
    return n, r, p, salt, digest

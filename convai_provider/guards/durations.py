"""Numbers users give for time and retries: finite, in range, refused by name when not.

`float()` accepts "nan" and "inf": a timeout of nan never expires (comparisons with it are all
false) and one of inf, or 1e300, overflows the socket layer. Both are refused with the name of
the setting they came in, as are negative numbers and, where zero would fail every call, zero.
"""

from __future__ import annotations

import argparse
import math

MAX_SECONDS = 86_400.0
"""A day: longer than any call or wait this project makes, short enough for every clock."""

MAX_RETRIES = 100


def seconds(value: object, name: str, *, zero_ok: bool = True) -> float:
    """`value` as a number of seconds; otherwise a ValueError that starts with `name`."""
    number = _number(value)
    low = 0 if zero_ok else "just above 0"
    if (
        number is None
        or not math.isfinite(number)
        or number < 0
        or (number == 0 and not zero_ok)
        or number > MAX_SECONDS
    ):
        raise ValueError(
            f"{name} is {value!r}: it must be a number of seconds from {low} to "
            f"{MAX_SECONDS:.0f} (a day)"
        )
    return number


def seconds_argument(text: str) -> float:
    """argparse's `type` for a duration option (argparse names the option)."""
    try:
        return seconds(text, "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds from 0 to {MAX_SECONDS:.0f} (a day)"
        ) from None


def retries(value: object, name: str) -> int:
    """`value` as a count of retries; otherwise a ValueError that starts with `name`."""
    number = _number(value)
    if number is None or not number.is_integer() or not 0 <= number <= MAX_RETRIES:
        raise ValueError(f"{name} is {value!r}: it must be a whole number from 0 to {MAX_RETRIES}")
    return int(number)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None  # YAML's `true` is no duration
    if not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None

"""Convai's built-in model codes: what a character may use besides the account's private models.

The one list, read by the emulator (which accepts exactly these) and by the stack schema (which
refuses a `fallbackModel` that is none of these nor a model of the stack). It is the list on
Convai's Core AI Settings page; Convai adds models over time, and a stack names newer codes in
`extraBuiltinModels` until this list catches up.
"""

from __future__ import annotations

BUILTIN_MODEL_CODES = (
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "claude-opus-4.1",
    "claude-opus-4",
    "claude-4-sonnet",
    "claude-3-7-sonnet",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemma-3n-e4b",
    "gemma-3n-e2b",
    "llama-4-maverick",
    "llama-4-scout",
    "llama-3-70B",
)
"""In the order Convai's page lists them; codes are case-sensitive (`llama-3-70B`)."""

BUILTIN_MODELS = frozenset(BUILTIN_MODEL_CODES)

DEFAULT_FALLBACK_MODEL = "gpt-4o-mini"
"""Where characters go when their private model goes away, unless a stack says otherwise (and,
in the emulator, the model a new character starts on). Pulumi.yaml repeats it as the default of
`fallbackModel`, since YAML cannot import it; a test keeps the two equal."""

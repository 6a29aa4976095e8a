"""The Convai account is part of a model's identity: another account's key never drops a model.

Convai exposes no account id, and two accounts may hold models of the same name. So each model's
state records `convai_key_fingerprint`, a fingerprint of the Convai key that created it or last
saw it (`guards.fingerprints`: salted scrypt, nothing that gives the key back; a secret in state
besides). The rule, for every operation:

- Convai holds the model under the key in use (the list reports it, an update succeeds): the
  model belongs to that key's account, and that key's fingerprint is recorded. A rotated key is
  so accepted the first time it sees the model; nothing else is needed for a rotation.
- Convai does not hold the model under the key in use: it is "gone" (refresh drops it, delete
  succeeds) only when the recorded fingerprint is the key in use's. Otherwise the key may be
  another account's (a wrong CI secret, a mistyped key): the operation fails and state keeps the
  model. A person who knows better (the key was rotated and the model deleted meanwhile) removes
  it with `pulumi state delete`.

Per model rather than per stack, so models of several accounts live in one stack
(docs/accounts.md): each model keeps the fingerprint of its own account's key.
"""

from __future__ import annotations

from convai_provider.api.accounts import account_key_settings
from convai_provider.guards.fingerprints import fingerprint, is_fingerprint_of

KEY_FINGERPRINT = "convai_key_fingerprint"


def seen_with(api_key: str, recorded: object) -> str:
    """What to record after Convai held the model under `api_key`: the recorded fingerprint when
    it is `api_key`'s (state does not churn), else `api_key`'s."""
    if is_fingerprint_of(api_key, recorded) and isinstance(recorded, str):
        return recorded
    return fingerprint(api_key)


def why_not_gone(
    api_key: str, recorded: object, what: str = "model", account: object = None
) -> str | None:
    """Why a `what` (a model, a character binding) of `account` (its alias; None: the default
    account) Convai does not hold under `api_key` must stay in state; None when it is gone."""
    if is_fingerprint_of(api_key, recorded):
        return None
    if recorded is None:
        whose = "state does not record which key it was created with (an earlier version wrote it)"
    else:
        whose = f"the Convai key in use is not the one this {what} was created with"
    gone = "the model really was deleted" if what == "model" else "its character really was deleted"
    return (
        f"Convai does not hold it under the Convai key in use, and {whose}: that key may be "
        f"another account's (a wrong CI secret, a mistyped key). State keeps the {what}. Set "
        f"{account_key_settings(account)} to the key of its account and run again; if the "
        f"key was rotated and {gone} from Convai, remove it from state with "
        "`pulumi state delete` and its URN (docs/state-integrity.md)"
    )

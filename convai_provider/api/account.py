"""One Convai account as the providers use it: the client, one shared listing, and their rules.

Everything the providers ask of Convai goes through an `Operation`, which makes three rules code
rather than conventions:
- every write (register, update, deregister) runs inside the listing's `writing()`, so no read
  is served a listing requested before a write this process completed;
- an operation has one deadline, fixed when it starts: every call it makes, retries and waits
  included, shares it;
- a register whose reply was lost is settled from the shared listing: when a retried register
  meets 409, the earlier attempt may have registered the model unseen, and the client's rule
  (a model listed exactly as sent is this register's success) reads it from a list requested
  after the 409. A register that succeeds lists nothing: what Convai computes for a new model
  waits for the next read (docs/big-stacks.md says why).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import AbsenceNotConfirmedError, ConvaiError, NotFoundError
from convai_provider.api.listing import SharedListing
from convai_provider.api.wire import (
    Character,
    PrivateModel,
    RegisterRequest,
    RegisterResponse,
    UpdateRequest,
)

DEFAULT_OPERATION_TIMEOUT = 300.0
"""Seconds one provider operation may take, retries included (custom_timeouts do not apply)."""


class ConvaiAccount:
    """Thread-safe: the provider process serves concurrent operations from one account."""

    def __init__(
        self,
        client: ConvaiClient,
        *,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.operation_timeout = operation_timeout
        self._clock = clock
        self._listing = SharedListing(
            lambda deadline: client.list_models(deadline=deadline), clock=clock
        )

    def operation(self) -> Operation:
        """Start one operation: it must be done `operation_timeout` seconds from now."""
        return Operation(
            self._client, self._listing, self._clock() + self.operation_timeout, self._clock
        )


class Operation:
    """What one provider operation asks of Convai, every call under the deadline it started
    with; writes inside the listing's `writing()`."""

    def __init__(
        self,
        client: ConvaiClient,
        listing: SharedListing,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: the listing's, on which "requested from now on" is measured."""
        self._client = client
        self._listing = listing
        self.deadline = deadline
        self._clock = clock

    # reads ------------------------------------------------------------------------------------

    def listed(self, model_group_name: str) -> PrivateModel | None:
        """The model as a listing no older than this process's last write reports it."""
        return self._listing.current(self.deadline).find(model_group_name)

    def listed_from_now(self, model_group_name: str) -> PrivateModel | None:
        """The model as a listing requested from now on reports it."""
        return self._listing.requested_after(self._clock(), self.deadline).find(model_group_name)

    def models_from_now(self) -> list[PrivateModel]:
        """Every model, as a listing requested from now on reports them."""
        return list(self._listing.requested_after(self._clock(), self.deadline).models)

    def character(self, char_id: str) -> Character:
        return self._client.get_character(char_id, deadline=self.deadline)

    # writes -----------------------------------------------------------------------------------

    def register(self, request: RegisterRequest) -> RegisterResponse:
        """Register the model. No list is read unless a retry meets 409 after an attempt of
        unknown outcome: a whole-account list per create made creating N models cost O(N^2).

        Raises ConflictError when a model of this name was there before this register.
        """
        with self._listing.writing():
            return self._client.register(
                request, deadline=self.deadline, listed=self.listed_from_now
            )

    def update(self, request: UpdateRequest) -> None:
        with self._listing.writing():
            self._client.update(request, deadline=self.deadline)

    def deregister(self, model_group_name: str) -> bool:
        """Deregister the model; False when it was already gone.

        A 404 alone is never taken as "gone": a wrong base URL, path prefix or proxy answers
        404 too, and so may Convai's own host for a path it does not serve (in its envelope,
        as the emulator does). Absence is confirmed by a whole list requested after the 404;
        a model that list holds, or a list that fails, leaves the 404 an error.
        """
        with self._listing.writing():
            try:
                self._client.deregister(model_group_name, deadline=self.deadline)
                return True
            except NotFoundError as refusal:
                not_found = refusal
                refused_at = self._clock()
        try:
            listing = self._listing.requested_after(refused_at, self.deadline)
        except ConvaiError as exc:
            raise AbsenceNotConfirmedError(
                not_found, f"the list to confirm it failed: {exc}"
            ) from None
        if listing.find(model_group_name) is not None:
            raise AbsenceNotConfirmedError(not_found, "yet Convai's list holds the model")
        return False

    def set_character_model(self, char_id: str, model_group_name: str) -> None:
        """Characters are not listed models: the listing stays valid."""
        self._client.set_character_model(char_id, model_group_name, deadline=self.deadline)

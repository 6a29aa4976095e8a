"""Fault injection for the emulator: latency, error statuses and replies lost after commit."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from convai_provider.guards.headers import header_value_problem


class FaultRule(BaseModel):
    """One rule, posted as JSON to `/_emulator/faults`.

    It matches requests to `path` (every Convai path when absent) and fires for the next `count`
    of them, or for a `fraction` of them, or for all of them when neither is given. When it fires
    it adds `latency_ms`, then answers `status` (with `Retry-After: retry_after` when set) without
    touching state, or, with `drop_after_commit`, performs the request and closes the connection
    before the reply is complete.
    """

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    latency_ms: int = Field(default=0, ge=0, le=600_000)
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: str | None = None
    message: str | None = None
    drop_after_commit: bool = False
    count: int | None = Field(default=None, ge=1)
    fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None

    @field_validator("retry_after")
    @classmethod
    def _fits_a_header(cls, value: str | None) -> str | None:
        problem = None if value is None else header_value_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}: it is sent as the Retry-After header")
        return value


@dataclass
class FaultDecision:
    latency_ms: int = 0
    status: int | None = None
    retry_after: str | None = None
    message: str | None = None
    drop_after_commit: bool = False


@dataclass
class _ActiveRule:
    rule: FaultRule
    remaining: int | None
    rng: random.Random = field(default_factory=random.Random)

    def fires(self, path: str) -> bool:
        if self.rule.path is not None and self.rule.path != path:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        if self.rule.fraction is not None:
            return self.rng.random() < self.rule.fraction
        return True


class FaultPlan:
    """The rules in force; thread-safe, consulted once per Convai request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_ActiveRule] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(_ActiveRule(rule, rule.count, random.Random(rule.seed)))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def active(self) -> list[dict[str, object]]:
        """The rules in force as posted, each with how many firings it has left (None: no
        count, it stays until cleared)."""
        with self._lock:
            return [
                {"rule": a.rule.model_dump(exclude_defaults=True), "remaining": a.remaining}
                for a in self._rules
            ]

    def decide(self, path: str) -> FaultDecision:
        decision = FaultDecision()
        with self._lock:
            for active in self._rules:
                if not active.fires(path):
                    continue
                rule = active.rule
                decision.latency_ms += rule.latency_ms
                if rule.status is not None and decision.status is None:
                    decision.status = rule.status
                    decision.retry_after = rule.retry_after
                    decision.message = rule.message
                decision.drop_after_commit = decision.drop_after_commit or rule.drop_after_commit
            self._rules = [a for a in self._rules if a.remaining is None or a.remaining > 0]
        return decision

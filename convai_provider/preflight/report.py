"""What the preflight found: each check's outcome, and the report that sums them up."""

from __future__ import annotations

from dataclasses import dataclass, field

from convai_provider.guards.text import sentence


@dataclass(frozen=True)
class EndpointCheck:
    """One check's outcome (not Pulumi's `dynamic.CheckResult`, which is a provider's check)."""

    name: str
    """reachable, key accepted, key enforced, model listed or chat completion."""
    ok: bool
    detail: str
    final: bool = False
    """A failure that waiting will not fix (a wrong key, a model that is not served)."""
    warning: bool = False
    """Passed, but worth fixing (an endpoint anyone can use)."""
    retry_after: float | None = None
    """Seconds the endpoint asked to be left alone before the next attempt (Retry-After)."""


@dataclass
class PreflightReport:
    base_url: str
    model_name: str
    checks: list[EndpointCheck] = field(default_factory=list)
    attempts: int = 0
    waited: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failure(self) -> EndpointCheck | None:
        return next((c for c in self.checks if not c.ok), None)

    def summary(self) -> str:
        failure = self.failure
        if failure is None:
            return f"{self.base_url} serves '{self.model_name}' and answers chat completions."
        tries = (
            f" (after {self.attempts} attempts over {self.waited:.0f}s)"
            if self.attempts > 1
            else ""
        )
        return sentence(
            f"Endpoint check '{failure.name}' failed for {self.base_url}{tries}: {failure.detail}"
        )

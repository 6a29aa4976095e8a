"""The Convai guardrails policy pack (docs/policy.md); not part of the installed package."""

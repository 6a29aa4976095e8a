"""The Convai guardrails policy pack (docs/policy.md): `pulumi preview --policy-pack
policy/analyzer --policy-pack-config policy/stacks/<stack>.json`.

The rules, their default levels and config schemas are `guardrails.RESOURCE_RULES` and the
fallback rule; a stack's config file sets each rule's level (mandatory, advisory, disabled) and
its properties.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pulumi_policy.policy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import guardrails  # the checkout, on the path from the line above


def resource_policy(rule: guardrails.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not rule.applies_to(args.resource_type):
            return
        protect = bool(args.opts.protect) if args.opts is not None else False
        config = args.get_config()
        for problem in guardrails.misnamed_properties(rule.name, rule.config, config):
            report(problem, None)
        for problem in rule.check(args.props, protect, config):
            report(problem, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        enforcement_level=EnforcementLevel(rule.default),
        config_schema=PolicyConfigSchema(properties=dict(rule.config)) if rule.config else None,
        validate=validate,
    )


def fallback_policy() -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [(r.resource_type, r.props) for r in args.resources]
        config = args.get_config()
        problems = guardrails.misnamed_properties(
            guardrails.FALLBACK_RULE, guardrails.FALLBACK_CONFIG, config
        )
        for problem in problems:
            report(problem, None)
        extra = config.get("extraBuiltinModels") or []
        for problem in guardrails.fallback_exists(resources, extra):
            report(problem, None)

    return StackValidationPolicy(
        name=guardrails.FALLBACK_RULE,
        description=guardrails.FALLBACK_DESCRIPTION,
        enforcement_level=EnforcementLevel(guardrails.FALLBACK_DEFAULT),
        config_schema=PolicyConfigSchema(properties=dict(guardrails.FALLBACK_CONFIG)),
        validate=validate,
    )


def refuse_unknown_rules() -> None:
    """Make the pack refuse a policy config naming a rule it does not have. The CLI hands such a
    name to the pack's Configure as it is (pulumi's ReconcilePolicyPackConfig keeps every name
    given), and pulumi-policy ignores it: a misspelt rule would keep its default level silently.
    Configure is the one call that sees the whole config; pulumi-policy has no hook for it, so
    its servicer's method is wrapped (the version is pinned in constraints.txt)."""
    servicer = pulumi_policy.policy._PolicyAnalyzerServicer
    configure: Callable[..., Any] = servicer.Configure

    def checked_configure(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        problem = guardrails.unknown_rules_problem(request.policyConfig)
        if problem is not None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return configure(self, request, context)

    servicer.Configure = checked_configure  # type: ignore[method-assign]


refuse_unknown_rules()
policies: list[Policy] = [resource_policy(rule) for rule in guardrails.RESOURCE_RULES]
policies.append(fallback_policy())
PolicyPack(name="convai-guardrails", policies=policies)

"""`preflight`: one endpoint checked the way Convai will use it."""

from __future__ import annotations

import argparse
import os
import sys

from convai_provider.guards.durations import seconds_argument
from convai_provider.guards.keys import UnfitKeyError, fit_key
from convai_provider.guards.urls import endpoint_url_problem, refusal
from convai_provider.preflight.checks import DEFAULT_WAIT, PreflightReport
from convai_stack.commands.parser import Commands, OperatorError

ENDPOINT_KEY_ENV = "ENDPOINT_API_KEY"


def add_preflight(commands: Commands) -> None:
    preflight = commands.add_parser(
        "preflight",
        help="check that an endpoint is OpenAI-compatible, keyed and serving a model",
        description=(
            "Check BASE_URL the way Convai will use it: reachable, GET /models accepted with the "
            "key (and refused without it where keys are enforced), MODEL listed, and a 1-token "
            "chat completion. Transient failures (connection refused, 502/503/504, timeouts) are "
            "retried for up to --timeout seconds, since a fresh vLLM takes minutes to load. "
            "Exits 0 when every check passes, 1 otherwise."
        ),
    )
    preflight.add_argument("--base-url", required=True, help="the API root, e.g. https://host/v1")
    preflight.add_argument("--model", required=True, help="the served model name")
    preflight.add_argument(
        "--api-key",
        default=os.environ.get(ENDPOINT_KEY_ENV),
        help=f"the endpoint's key (default: ${ENDPOINT_KEY_ENV})",
    )
    preflight.add_argument(
        "--timeout",
        type=seconds_argument,
        default=DEFAULT_WAIT,
        help=f"seconds to wait for the endpoint to become ready (default {DEFAULT_WAIT:.0f})",
    )
    preflight.set_defaults(run=_run_preflight)


def _run_preflight(args: argparse.Namespace) -> int:
    from convai_provider.preflight.checks import check_endpoint

    if args.api_key is not None:
        from_env = args.api_key == os.environ.get(ENDPOINT_KEY_ENV)
        source = ENDPOINT_KEY_ENV if from_env else "--api-key"
        try:
            fit_key(args.api_key, source, "give the key without it")
        except UnfitKeyError as exc:
            raise OperatorError(str(exc)) from None
    problem = endpoint_url_problem(args.base_url)
    if problem is not None:
        raise OperatorError(refusal("--base-url", args.base_url, problem))
    report = check_endpoint(
        args.base_url,
        args.model,
        args.api_key,
        wait=args.timeout,
        on_wait=Progress(sys.stderr.isatty()),
    )
    for check in report.checks:
        status = "FAIL" if not check.ok else "WARN" if check.warning else "PASS"
        print(f"{status}  {check.name}: {check.detail}")
    print(report.summary())
    return 0 if report.ok else 1


class Progress:
    """Says why the preflight is still waiting: at every notice on a terminal (each retry, and
    every WAIT_NOTICE_EVERY seconds of a pause); piped (CI logs) at most every PIPED_EVERY
    seconds, so a long wait is neither silent nor a flood."""

    PIPED_EVERY = 10.0

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.shown_at: float | None = None

    def __call__(self, report: PreflightReport) -> None:
        if not self.terminal:
            if self.shown_at is not None and report.waited - self.shown_at < self.PIPED_EVERY:
                return
            self.shown_at = report.waited
        print(f"waiting ({report.waited:.0f}s): {report.summary()}", file=sys.stderr, flush=True)

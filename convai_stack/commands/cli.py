"""`convai-models <command>`: the emulator, the preflight and the operator commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from convai_provider.guards.durations import seconds_argument
from convai_provider.guards.keys import key_problem
from convai_provider.guards.text import safe_output
from convai_provider.guards.urls import endpoint_url_problem, refusal
from convai_provider.preflight.checks import DEFAULT_WAIT, PreflightReport
from convai_stack.commands.command_line import EXIT_ERROR, CommandLine, Commands, OperatorError
from convai_stack.commands.operator_commands import add_operator_commands

ENDPOINT_KEY_ENV = "ENDPOINT_API_KEY"
# What the emulator imports from its extra (pyproject.toml); a deployment installs neither, so
# this module and every other command must not import them.
EMULATOR_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})


ENTRY_POINT = "convai-models"
"""The installed command (pyproject.toml's [project.scripts]); otherwise `python -m`."""


def program_name(argv0: str) -> str:
    """What usage lines and error hints call the command: the way it was run."""
    path = Path(argv0)
    if path.name == ENTRY_POINT:
        return ENTRY_POINT
    if path.name == "__main__.py" and path.parent.name == "convai_stack":
        return "python -m convai_stack"
    return "python -m convai_provider"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLine(
        prog=program_name(sys.argv[0]),
        description="Convai private LLM models: local emulator and operator tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_emulator(commands)
    _add_preflight(commands)
    add_operator_commands(commands)
    return parser


def _add_emulator(commands: Commands) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="run a local Convai /llm-models server backed by SQLite",
        description=(
            "Serve Convai's /llm-models/register, update, deregister and list, and "
            "/character/create, get and update, on HOST:PORT, with state in the SQLite file DB "
            "(kept across restarts). Every distinct "
            "CONVAI-API-KEY is its own account. Admin endpoints under /_emulator/ reset state "
            "and inject faults (see docs/emulator.md). Prints 'Convai emulator listening on URL' "
            "when ready."
        ),
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulator.add_argument(
        "--port", type=port_argument, default=8787, help="port; 0 picks a free one (default 8787)"
    )
    emulator.add_argument(
        "--db",
        type=Path,
        default=Path(".convai-emulator.sqlite3"),
        help="SQLite database file (default .convai-emulator.sqlite3)",
    )
    emulator.add_argument("--no-access-log", action="store_true", help="do not log each request")
    emulator.set_defaults(run=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    try:
        from convai_provider.emulator.server import EmulatorStartError, serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in EMULATOR_EXTRA_MODULES:
            raise
        raise OperatorError(
            f"the emulator needs its extra ({exc.name} is not installed): "
            "pip install 'convai-models[emulator]'"
        ) from None
    try:
        serve(args.host, args.port, args.db, access_log=not args.no_access_log)
    except EmulatorStartError as exc:
        raise OperatorError(str(exc)) from None
    return 0


def port_argument(text: str) -> int:
    """argparse's `type` for --port: a TCP port, 0 for any free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 0 to 65535")
    return int(text)


def _add_preflight(commands: Commands) -> None:
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

    problem = None if args.api_key is None else key_problem(args.api_key)
    if problem is not None:
        from_env = args.api_key == os.environ.get(ENDPOINT_KEY_ENV)
        source = ENDPOINT_KEY_ENV if from_env else "--api-key"
        raise OperatorError(f"{source} {problem}: give the key without it")
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


def main(argv: Sequence[str] | None = None) -> int:
    with safe_output():
        args = build_parser().parse_args(argv)
        try:
            code: int = args.run(args)
        except OperatorError as exc:
            print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
            return EXIT_ERROR
        return code


if __name__ == "__main__":
    sys.exit(main())

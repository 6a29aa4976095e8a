"""Writes the project that `scripts/dev-up` runs the dev stack in, outside the tracked files.

    python scripts/dev_project.py --root CHECKOUT --out DIR --base-url URL

The dev stack is declared in the committed `stacks/Pulumi.dev.yaml`. What belongs to one machine
(the passphrase salt and secret values `pulumi config set --secret` writes) must not land there,
so the CLI runs in DIR instead: DIR/Pulumi.yaml runs the checkout's program with the checkout's
virtualenv, and DIR/Pulumi.dev.yaml is the committed configuration plus those local values,
carried over from the last run (or, once, from a stack file an older dev-up wrote them into).

convai:baseUrl is the dev emulator's URL (URL), so every `pulumi` run on this project, by hand
too, reaches it and never the public Convai URL. Refresh and destroy configure providers from the
configuration stored in state at the last update, so that URL must not change from run to run:
dev-up keeps the emulator's port (docs/dev-loop.md).

    pulumi stack export --stack dev | python scripts/dev_project.py --root CHECKOUT --stored-port

prints the emulator port that `pulumi stack export` (on stdin) holds, for refresh and destroy;
and

    python scripts/dev_project.py --root CHECKOUT --check PULUMI-ARGS...

exits 2 with one line when PULUMI-ARGS would change a plain setting in DIR/Pulumi.dev.yaml, which
the next run writes again from the committed file: the change would be lost without a word.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from convai_stack.stack_config import (
    DEV_STACK,
    PROJECT,
    StackConfigError,
    read_stack_document,
)
from convai_stack.stack_config import stack_file as committed_stack_file

STACK = DEV_STACK
SALT = "encryptionsalt"
DYNAMIC_PROVIDER = "pulumi:providers:pulumi-python"
LOCAL_ONLY = (SALT, "secretsprovider", "encryptedkey")
"""Stack file keys beside `config:` that hold this machine's secrets setup."""


def read_yaml(path: Path) -> dict[str, Any]:
    """A project or stack file, read as the program and the operator commands read them (a key
    given twice is refused, naming it and its lines); {} when there is none yet."""
    if not path.exists():
        return {}
    try:
        return read_stack_document(path)
    except StackConfigError as exc:
        raise SystemExit(f"dev-up: {exc}") from None


def secure_values(document: dict[str, Any]) -> dict[str, Any]:
    """The secrets of each config key that holds any: its `{secure: ...}` value, or, for a map
    (a secret set with `config set --secret --path`, such as convai:accounts.partner.apiKey),
    the part of it that leads to secrets."""
    config = document.get("config") or {}
    return {k: secrets for k, v in config.items() if (secrets := _secrets_in(v)) is not None}


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and "secure" in value


def _secrets_in(value: Any) -> Any:
    if _is_secret(value):
        return value
    if isinstance(value, dict):
        inner = {k: found for k, v in value.items() if (found := _secrets_in(v)) is not None}
        return inner or None
    return None


def _with_secrets(plain: Any, secrets: Any) -> Any:
    """`plain` (a committed value) with `secrets` (secure_values' part of it) laid over it."""
    if isinstance(plain, dict) and isinstance(secrets, dict) and not _is_secret(secrets):
        return plain | {k: _with_secrets(plain.get(k), v) for k, v in secrets.items()}
    return secrets


GENERATED = (
    "# Written by scripts/dev-up at every run from stacks/Pulumi.dev.yaml, which is where to\n"
    "# change the dev stack: only the secrets and the salt here are kept from run to run.\n"
)


def _namespaced(key: str, by_path: bool) -> str:
    if by_path:  # `--path models[0].display_name` changes the key `models`
        key = key.split(".", 1)[0].split("[", 1)[0]
    return key if ":" in key else f"{PROJECT}:{key}"


def lost_config_change(root: Path, command: list[str]) -> str | None:
    """Why a `pulumi config` command on the dev project would be lost at the next dev-up run
    (None when it would not): a plain `set` (only secrets are carried over), or an `rm` of a key
    the committed file declares (the next run declares it again)."""
    if len(command) < 2 or command[0] != "config":
        return None
    action, rest = command[1], command[2:]
    flags = {a.split("=", 1)[0] for a in rest if a.startswith("-")}
    words = [a for a in rest if not a.startswith("-")]
    committed_file = committed_stack_file(STACK, root)
    if action == "set" and "--secret" not in flags and words:
        key = _namespaced(words[0], "--path" in flags)
        return (
            f"dev-up: `config set {words[0]}` without --secret would change only dev-up's copy "
            f"of the dev stack's file, which the next run writes again from {committed_file}: "
            f"set {key} there instead (only secrets, `config set --secret`, are kept here)"
        )
    if action == "set-all" and "--plaintext" in flags:
        return (
            "dev-up: `config set-all --plaintext` would change only dev-up's copy of the dev "
            f"stack's file, which the next run writes again from {committed_file}: set plain "
            "values there instead (only secrets, `--secret`, are kept here)"
        )
    if action in ("rm", "rm-all"):
        declared = (read_yaml(committed_file).get("config") or {}).keys()
        kept = [k for k in words if _namespaced(k, "--path" in flags) in declared]
        if kept:
            return (
                f"dev-up: {', '.join(kept)} is declared in {committed_file}, and the next run "
                "writes it again from there: remove it from that file instead"
            )
    return None


def stored_port(export: str) -> str | None:
    """The emulator port in the dev stack's state (`pulumi stack export`): the default dynamic
    provider's `convai:baseUrl`, which refresh and destroy use. None without state or one."""
    try:
        resources = json.loads(export)["deployment"]["resources"] or []
    except (ValueError, KeyError, TypeError):
        return None
    for resource in resources:
        if resource.get("type") == DYNAMIC_PROVIDER:
            url = (resource.get("inputs") or {}).get("convai:baseUrl")
            if not isinstance(url, str):
                return None
            try:
                port = urlsplit(url).port
            except ValueError:
                return None
            return str(port) if port else None
    return None


def project_file(root: Path) -> dict[str, Any]:
    project = read_yaml(root / "Pulumi.yaml")
    project["main"] = str(root)
    project.pop("stackConfigDir", None)
    project["runtime"]["options"]["virtualenv"] = str(root / ".venv")
    return project


def stack_file(root: Path, previous: dict[str, Any], base_url: str) -> dict[str, Any]:
    committed = read_yaml(committed_stack_file(STACK, root))
    # Where an older dev-up wrote its salt and secrets into the committed file, they are taken
    # over once; the previous generated file wins after that.
    local = previous if SALT in previous else committed
    config = {k: v for k, v in (committed.get("config") or {}).items() if not _is_secret(v)}
    config["convai:baseUrl"] = base_url
    for key, secrets in (secure_values(committed) | secure_values(local)).items():
        config[key] = _with_secrets(config.get(key), secrets)
    document: dict[str, Any] = {k: local[k] for k in LOCAL_ONLY if k in local}
    document["config"] = config
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout")
    parser.add_argument("--out", type=Path, help="the project directory to write")
    parser.add_argument("--base-url", help="the dev emulator's URL")
    parser.add_argument("--check", nargs=argparse.REMAINDER, help="pulumi arguments to check")
    parser.add_argument(
        "--stored-port", action="store_true", help="print the port `pulumi stack export` holds"
    )
    args = parser.parse_args()
    if args.stored_port:
        print(stored_port(sys.stdin.read()) or "")
        return
    if args.check is not None:
        refusal = lost_config_change(args.root, args.check)
        if refusal:
            print(refusal, file=sys.stderr)
            raise SystemExit(2)
        return
    if args.out is None or args.base_url is None:
        parser.error("--out and --base-url are required")
    args.out.mkdir(parents=True, exist_ok=True)
    stack_path = args.out / f"Pulumi.{STACK}.yaml"
    document = stack_file(args.root, read_yaml(stack_path), args.base_url)
    (args.out / "Pulumi.yaml").write_text(yaml.safe_dump(project_file(args.root), sort_keys=False))
    stack_path.write_text(GENERATED + yaml.safe_dump(document, sort_keys=False))


if __name__ == "__main__":
    main()

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
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

STACK = "dev"
SALT = "encryptionsalt"
LOCAL_ONLY = (SALT, "secretsprovider", "encryptedkey")
"""Stack file keys beside `config:` that hold this machine's secrets setup."""


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict):
        raise SystemExit(f"dev-up: {path} must be a YAML mapping")
    return document


def secure_values(document: dict[str, Any]) -> dict[str, Any]:
    config = document.get("config") or {}
    return {k: v for k, v in config.items() if isinstance(v, dict) and "secure" in v}


def project_file(root: Path) -> dict[str, Any]:
    project = read_yaml(root / "Pulumi.yaml")
    project["main"] = str(root)
    project.pop("stackConfigDir", None)
    project["runtime"]["options"]["virtualenv"] = str(root / ".venv")
    return project


def stack_file(root: Path, previous: dict[str, Any], base_url: str) -> dict[str, Any]:
    committed = read_yaml(root / "stacks" / f"Pulumi.{STACK}.yaml")
    # Where an older dev-up wrote its salt and secrets into the committed file, they are taken
    # over once; the previous generated file wins after that.
    local = previous if SALT in previous else committed
    config = {
        k: v
        for k, v in (committed.get("config") or {}).items()
        if k not in secure_values(committed)
    }
    config["convai:baseUrl"] = base_url
    config.update(secure_values(committed) | secure_values(local))
    document: dict[str, Any] = {k: local[k] for k in LOCAL_ONLY if k in local}
    document["config"] = config
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout")
    parser.add_argument("--out", type=Path, required=True, help="the project directory to write")
    parser.add_argument("--base-url", required=True, help="the dev emulator's URL")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stack_path = args.out / f"Pulumi.{STACK}.yaml"
    document = stack_file(args.root, read_yaml(stack_path), args.base_url)
    (args.out / "Pulumi.yaml").write_text(yaml.safe_dump(project_file(args.root), sort_keys=False))
    stack_path.write_text(yaml.safe_dump(document, sort_keys=False))


if __name__ == "__main__":
    main()

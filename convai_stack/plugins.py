"""The Pulumi resource plugins that `vllm` endpoints need, and what to run when one is missing.

With automatic plugin acquisition off (`PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION`, as this
project's scripts run the CLI), the CLI reports a missing plugin as "no resource plugin ... found"
in the middle of the program's traceback, without saying how to get it. The program looks first,
where the CLI looks (an ambient `pulumi-resource-NAME` on PATH, `$PULUMI_HOME/plugins`), and
refuses with the install commands. With acquisition on, the CLI downloads what is missing, or
says itself which command installs it. A plugin found elsewhere is left to the CLI to judge: this
check only ever refuses what the CLI would refuse too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

VLLM_PACKAGES = ("pulumi_kubernetes", "pulumi_random")
"""The Pulumi packages whose resources a vllm endpoint declares."""

ACQUISITION_OFF = "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"
IGNORE_AMBIENT = "PULUMI_IGNORE_AMBIENT_PLUGINS"


@dataclass(frozen=True)
class Plugin:
    name: str
    version: str

    @property
    def install_command(self) -> str:
        return f"pulumi plugin install resource {self.name} {self.version}"


def plugin_of(package: str) -> Plugin:
    """The plugin a Pulumi package's resources run in, at the version the package asks for."""
    described = json.loads((resources.files(package) / "pulumi-plugin.json").read_text())
    return Plugin(str(described["name"]), str(described["version"]))


def _truthy(value: str | None) -> bool:
    """As the CLI reads its boolean variables."""
    return value is not None and (value == "1" or value.lower() == "true")


def is_installed(plugin: Plugin, environ: Mapping[str, str]) -> bool:
    if not _truthy(environ.get(IGNORE_AMBIENT)) and shutil.which(
        f"pulumi-resource-{plugin.name}", path=environ.get("PATH", "")
    ):
        return True
    home = Path(environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return (home / "plugins" / f"resource-{plugin.name}-v{plugin.version}").is_dir()


def missing_plugins_problem(environ: Mapping[str, str]) -> str | None:
    """Why the CLI will not find the plugins of vllm endpoints, with the commands; None when it
    may (or will download them)."""
    if not _truthy(environ.get(ACQUISITION_OFF)):
        return None
    missing = [p for p in map(plugin_of, VLLM_PACKAGES) if not is_installed(p, environ)]
    if not missing:
        return None
    names = " and ".join(f"{p.name} v{p.version}" for p in missing)
    commands = "; ".join(f"`{p.install_command}`" for p in missing)
    return (
        f"vllm endpoints need the Pulumi resource plugins {names}, which are not installed "
        f"(and {ACQUISITION_OFF} keeps the CLI from downloading them): run {commands} "
        "(docs/staging.md, 'Plugins', says how on a machine without access to get.pulumi.com)"
    )

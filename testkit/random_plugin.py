"""A stand-in `pulumi-resource-random` plugin, for running the stacks through the real CLI here.

The stacks generate each vLLM endpoint's key with `pulumi_random.RandomPassword`. Its real
plugin is a Go module the module proxy refuses (github.com/pulumi/pulumi-random/provider/v4,
403), and no prebuilt plugin can be downloaded on this machine, so the stack tests run this one,
installed under the version the pinned pulumi_random SDK asks for. Production runs the real
plugin, which `pulumi up` downloads as usual: nothing here is on that path.

It serves the one resource the program uses, RandomPassword, over the same gRPC protocol with the
real resource's semantics (terraform-provider-random's random_password, which pulumi-random
bridges): every input forces a replacement (create before delete), `length` must be at least 1
and at least the sum of the `min_*` counts, unset character classes default to on, the result is
a secret of that many characters drawn from the enabled classes with each minimum met, nothing
exists outside the state (read returns the state, delete forgets it). It leaves out
`bcryptHash`, which the program does not read.

docs/kubernetes-tests.md says why a stand-in rather than a change to the program.
"""

from __future__ import annotations

import json
import secrets
import stat
import sys
from concurrent import futures
from importlib import resources
from threading import Event
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from .pulumi_cli import ROOT, PulumiProject

RESOURCE_TYPE = "random:index/randomPassword:RandomPassword"
LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()
NUMERIC = "0123456789"
SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
"""terraform-provider-random's special characters when override_special is not set."""
DEFAULTS: dict[str, Any] = {
    "keepers": None,
    "lower": True,
    "upper": True,
    "numeric": True,
    "number": True,
    "special": True,
    "minLower": 0,
    "minUpper": 0,
    "minNumeric": 0,
    "minSpecial": 0,
    "overrideSpecial": None,
}
"""Every input but `length`, with the value an unset one takes."""
INPUTS = ("length", *DEFAULTS)


def sdk_version() -> str:
    """The plugin version the installed pulumi_random SDK asks the engine for."""
    plugin = resources.files("pulumi_random").joinpath("pulumi-plugin.json").read_text()
    version: str = json.loads(plugin)["version"]
    return version


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    values: dict[str, Any] = json_format.MessageToDict(struct)
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in values.items()}


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _secret(value: str) -> dict[str, str]:
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


def problems(inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """What terraform-provider-random refuses in a random_password's inputs."""
    length = inputs.get("length")
    if length == rpc.UNKNOWN:
        return []
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        return [("length", "length must be an integer of at least 1")]
    minimums = sum(int(inputs.get(k) or 0) for k in ("minLower", "minUpper", "minNumeric"))
    minimums += int(inputs.get("minSpecial") or 0)
    if length < minimums:
        return [("length", f"length ({length}) must be >= the sum of the min_* counts")]
    return []


def generate(inputs: dict[str, Any]) -> str:
    """A password as random_password makes one: each class's minimum, then any enabled class."""
    settings = {k: inputs.get(k, default) for k, default in DEFAULTS.items()}
    special = settings["overrideSpecial"] or SPECIAL
    classes = [
        (LOWER, settings["lower"], settings["minLower"]),
        (UPPER, settings["upper"], settings["minUpper"]),
        (NUMERIC, settings["numeric"], settings["minNumeric"]),
        (special, settings["special"], settings["minSpecial"]),
    ]
    chosen = [secrets.choice(chars) for chars, _on, least in classes for _ in range(int(least))]
    pool = "".join(chars for chars, on, _least in classes if on)
    chosen += [secrets.choice(pool) for _ in range(int(inputs["length"]) - len(chosen))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [
        key
        for key in INPUTS
        if new.get(key) == rpc.UNKNOWN
        or old.get(key, DEFAULTS.get(key)) != new.get(key, DEFAULTS.get(key))
    ]


class RandomProvider(provider_pb2_grpc.ResourceProviderServicer):
    """The gRPC service; its method names are the protocol's."""

    def GetPluginInfo(self, request: empty_pb2.Empty, context: Any) -> Any:  # noqa: N802
        return plugin_pb2.PluginInfo(version=sdk_version())

    def CheckConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: Any, context: Any) -> Any:  # noqa: N802
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=True, acceptOutputs=True
        )

    def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        if request.type != RESOURCE_TYPE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown resource {request.type}")
        failures = [
            provider_pb2.CheckFailure(property=name, reason=reason)
            for name, reason in problems(_plain(request.news))
        ]
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    def Diff(self, request: Any, context: Any) -> Any:  # noqa: N802
        old = _plain(request.old_inputs) if request.HasField("old_inputs") else {}
        old = old or _plain(request.olds)
        changed = changed_inputs(old, _plain(request.news))
        if not changed:
            return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)
        replace = provider_pb2.PropertyDiff.UPDATE_REPLACE
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME,
            replaces=changed,
            diffs=changed,
            deleteBeforeReplace=False,
            hasDetailedDiff=True,
            detailedDiff={key: provider_pb2.PropertyDiff(kind=replace) for key in changed},
        )

    def Create(self, request: Any, context: Any) -> Any:  # noqa: N802
        inputs = _plain(request.properties)
        result: Any = rpc.UNKNOWN if request.preview else _secret(generate(inputs))
        outputs = {**DEFAULTS, **inputs, "result": result}
        outputs = {k: v for k, v in outputs.items() if v is not None}
        return provider_pb2.CreateResponse(id="none", properties=_struct(outputs))

    def Read(self, request: Any, context: Any) -> Any:  # noqa: N802
        state = _plain(request.properties)
        inputs = {k: v for k, v in state.items() if k in INPUTS}
        return provider_pb2.ReadResponse(
            id=request.id, properties=request.properties, inputs=_struct(inputs)
        )

    def Delete(self, request: Any, context: Any) -> Any:  # noqa: N802
        return empty_pb2.Empty()

    def Cancel(self, request: Any, context: Any) -> Any:  # noqa: N802
        return empty_pb2.Empty()


def serve() -> None:
    """The plugin protocol: serve on a loopback port, print it, run until the engine ends us."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(RandomProvider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    Event().wait()


def install(project: PulumiProject) -> None:
    """Installs the stand-in into the project's PULUMI_HOME as `random` at the SDK's version."""
    launcher = project.dir / "pulumi-resource-random"
    launcher.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{ROOT}'${{PYTHONPATH:+:$PYTHONPATH}} "
        f"exec '{sys.executable}' -m testkit.random_plugin \"$@\"\n"
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    project.run(
        "plugin",
        "install",
        "resource",
        "random",
        sdk_version(),
        "--file",
        str(launcher),
        stack_flag=False,
    )


if __name__ == "__main__":
    serve()

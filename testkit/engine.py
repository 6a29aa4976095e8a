"""A stand-in for the Pulumi engine, for tests and benchmarks.

Half one runs a Pulumi program under `set_mocks` and records what it registers, including the
real dill-pickled `__provider`. Half two starts the real dynamic provider server
(`python -u -m pulumi.dynamic`, as the CLI does, from the project root) and drives it over gRPC
with the engine's call sequences (docs/pulumi-engine.md), keeping a state of its own. The
engine's own behaviour is asserted through the real CLI (tests/test_real_engine.py); this drives
the provider call by call, for faults between calls and checks after each one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, provider_pb2, provider_pb2_grpc

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROVIDER_KEY = "__provider"
UNKNOWN = rpc.UNKNOWN


# Program side ------------------------------------------------------------------------------------


@dataclass
class Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    urn: str = ""
    parent: str = ""
    protect: bool = False
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    """The engine's create/update/delete budgets, as duration strings ("45m"); unset ones absent."""
    ignore_changes: list[str] = field(default_factory=list)


GENERATED_PASSWORD = "generated-endpoint-key-0c9e"
"""What the mocks answer for a pulumi_random password: the engine would make one up."""


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registrations: list[Registration] = []

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        self.registrations.append(
            Registration(args.typ, args.name, dict(args.inputs), bool(args.custom))
        )
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = GENERATED_PASSWORD
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None

    def find(self, type_: str, name: str) -> Registration:
        return next(r for r in self.registrations if r.type == type_ and r.name == name)


class RecordingMonitor(MockMonitor):
    """Adds what the mocks are not told: options, dependencies and the stack's exports."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording = mocks

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        reply = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            registration = self.recording.find(request.type, request.name)
            registration.urn = reply.urn
            registration.parent = request.parent
            registration.protect = bool(request.protect)
            registration.dependencies = list(request.dependencies)
            registration.property_dependencies = {
                key: list(deps.urns) for key, deps in request.propertyDependencies.items()
            }
            registration.additional_secret_outputs = list(request.additionalSecretOutputs)
            registration.ignore_changes = list(request.ignoreChanges)
            timeouts = request.customTimeouts
            registration.custom_timeouts = {
                step: getattr(timeouts, step)
                for step in ("create", "update", "delete")
                if getattr(timeouts, step)
            }
        return reply


@dataclass
class ProgramRun:
    registrations: list[Registration]
    exports: dict[str, Any]
    secret_exports: set[str]

    def of_type(self, token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == token]

    def named(self, name: str) -> Registration:
        return next(r for r in self.registrations if r.name == name)


def run_program(
    build: Callable[[], Any],
    *,
    stack: str = "dev",
    config: Mapping[str, str] | None = None,
    secret_keys: Iterable[str] = (),
    preview: bool = False,
) -> list[Registration]:
    """Run `build` as a Pulumi program under mocks; return what it registered, in order."""
    return run_program_fully(
        build, stack=stack, config=config, secret_keys=secret_keys, preview=preview
    ).registrations


def run_program_fully(
    build: Callable[[], Any],
    *,
    stack: str = "dev",
    config: Mapping[str, str] | None = None,
    secret_keys: Iterable[str] = (),
    preview: bool = False,
    mocks: RecordingMocks | None = None,
) -> ProgramRun:
    """Runs `build` under mocks; pass `mocks` to see what it registered even when it fails."""
    mocks = mocks or RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="convai-models", stack=stack, preview=preview, monitor=monitor
    )
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys))
    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()

    def record_export(name: str, value: Any) -> None:
        output = pulumi.Output.from_input(value)
        output.apply(lambda resolved: exports.__setitem__(name, resolved))
        output._data.add_done_callback(
            lambda done: secret_exports.add(name) if done.result().is_secret else None
        )

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> None:
        original = pulumi.export
        pulumi.export = record_export
        try:
            build()
        finally:
            pulumi.export = original

    program()
    return ProgramRun(mocks.registrations, exports, secret_exports)


# Provider side -----------------------------------------------------------------------------------


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(props), {}))
    finally:
        loop.close()


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(struct, keep_unknowns=True))


def strip_secrets(value: Any) -> Any:
    """The engine strips secret envelopes before calling a provider that does not accept them."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return strip_secrets(value["value"])
        return {k: strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    return value


class ProviderError(Exception):
    """The provider server answered a call with an error; `details` is what the CLI would show."""

    def __init__(self, call: str, details: str) -> None:
        self.call = call
        self.details = details
        super().__init__(f"{call} failed: {details}")


class ProviderProcess:
    """`python -u -m pulumi.dynamic`, started exactly as the Pulumi CLI starts it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        child_env = {**os.environ, "PULUMI_PROJECT": "convai-models", **(env or {})}
        # The engine's own gRPC server, which the provider watches (engine_watch.py): it answers
        # while this stand-in lives.
        self.engine = grpc.server(ThreadPoolExecutor(max_workers=1))
        self.engine_answered = threading.Event()
        """Set once the provider's engine watch has had an answer: it asks again only after one."""
        engine_pb2_grpc.add_EngineServicer_to_server(
            _EngineStandIn(self.engine_answered), self.engine
        )
        engine_port = self.engine.add_insecure_port("127.0.0.1:0")
        self.engine.start()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic", f"127.0.0.1:{engine_port}"],
            cwd=PROJECT_ROOT,
            # A pipe whose write end only this process holds, as the CLI gives every plugin:
            # the provider takes its end of file for the engine's (engine_watch.py).
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            text=True,
        )
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().strip()
        if not port.isdigit():
            self.close()
            raise RuntimeError(f"the provider server did not start: {port!r}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def close(self) -> str:
        """Stop the server; returns everything it wrote to stderr (its log)."""
        if hasattr(self, "channel"):
            self.channel.close()
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.engine.stop(None)
        return err or ""

    def close_engine_pipe(self) -> None:
        """What the kernel does to the provider's stdin when the CLI dies."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.stdin = None  # so close() does not flush it (Python 3.11's communicate would)

    def call(self, name: str, request: Any) -> Any:
        try:
            return getattr(self.stub, name)(request, timeout=600)
        except grpc.RpcError as exc:
            raise ProviderError(name, exc.details() or str(exc)) from None

    def configure(self, config: Mapping[str, Any]) -> None:
        """Configure gets the whole stack config, secrets still wrapped."""
        self.call("GetPluginInfo", _empty())
        args = to_struct(config)
        self.call("Configure", provider_pb2.ConfigureRequest(args=args, acceptSecrets=True))


class _EngineStandIn(engine_pb2_grpc.EngineServicer):
    def __init__(self, answered: threading.Event) -> None:
        self._answered = answered
        self._asked = 0

    def GetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        self._asked += 1
        if self._asked > 1:  # the watch asks one at a time: the first was answered
            self._answered.set()
        return engine_pb2.GetRootResourceResponse(urn="")


def _empty() -> Any:
    from google.protobuf import empty_pb2

    return empty_pb2.Empty()


# The engine --------------------------------------------------------------------------------------


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[1]


@dataclass
class Declared:
    """A resource as a program declares it: name, type, inputs (with `__provider`), and which
    resources each input property depends on (by name), as the engine records them."""

    name: str
    type: str
    inputs: dict[str, Any]
    property_deps: dict[str, set[str]] = field(default_factory=dict)
    depends_on: set[str] = field(default_factory=set)

    @property
    def urn(self) -> str:
        return f"urn:pulumi:dev::convai-models::{self.type}::{self.name}"

    @classmethod
    def from_registration(cls, reg: Registration) -> Declared:
        property_deps = {
            prop: {_name_of(urn) for urn in urns}
            for prop, urns in reg.property_dependencies.items()
        }
        depends_on = {_name_of(urn) for urn in reg.dependencies}
        depends_on.update(*property_deps.values())
        return cls(reg.name, reg.type, strip_secrets(reg.inputs), property_deps, depends_on)


@dataclass
class StateEntry:
    id: str
    type: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    property_deps: dict[str, set[str]] = field(default_factory=dict)
    depends_on: set[str] = field(default_factory=set)


def _change(res: Declared, entry: StateEntry, news: Mapping[str, Any]) -> dict[str, Any]:
    """What Diff and Update are both sent: the resource, its state, and its new inputs."""
    return {
        "id": entry.id,
        "urn": res.urn,
        "olds": to_struct(entry.outputs),
        "news": to_struct(news),
        "old_inputs": to_struct(entry.inputs),
        "name": res.name,
        "type": res.type,
    }


def _stored(name: str, res: Declared, entry: StateEntry) -> dict[str, Any]:
    """What Delete and Read are both sent of a resource in state: its ID, URN and outputs."""
    return {
        "id": entry.id,
        "urn": res.urn,
        "properties": to_struct(entry.outputs),
        "name": name,
        "type": entry.type,
    }


def dependency_levels(deps: Mapping[str, set[str]]) -> list[list[str]]:
    """Names grouped so that each level depends only on earlier levels."""
    remaining = {name: set(d) & set(deps) for name, d in deps.items()}
    levels: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, d in remaining.items() if not d)
        if not ready:
            raise AssertionError(f"dependency cycle among {sorted(remaining)}")
        levels.append(ready)
        for name in ready:
            del remaining[name]
        for d in remaining.values():
            d.difference_update(ready)
    return levels


UNBOUNDED = 512
"""`pulumi up --parallel` defaults to unbounded: every ready step is issued at once, and the
provider server's 4 workers queue what they cannot yet run. (A thread each, up to this many.)"""


@dataclass
class CheckFailedError(Exception):
    name: str
    failures: list[tuple[str, str]]


class Engine:
    """Drives provider processes with the engine's call sequences and keeps the state.

    Like the CLI, every command (preview, up, refresh, destroy) starts a provider process of its
    own, configured with the stack config, and stops it at the end.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        parallel: int = UNBOUNDED,
        after_each_change: Callable[[str], None] | None = None,
    ) -> None:
        """`after_each_change(call)` runs after every Create, Update and Delete returns."""
        self.after_each_change = after_each_change
        self.config = dict(config)
        self.env = dict(env or {})
        self.state: dict[str, StateEntry] = {}
        self.parallel = parallel
        self.calls: list[str] = []
        self.logs: list[str] = []
        self._provider: ProviderProcess | None = None

    @contextmanager
    def command(self) -> Iterator[ProviderProcess]:
        """One CLI command's provider process; commands nest into the outermost one."""
        if self._provider is not None:
            yield self._provider
            return
        provider = ProviderProcess(self.env)
        try:
            provider.configure(self.config)
            self._provider = provider
            yield provider
        finally:
            self._provider = None
            self.logs.append(provider.close())

    @property
    def provider(self) -> ProviderProcess:
        if self._provider is None:
            raise AssertionError("provider calls happen inside `with engine.command():`")
        return self._provider

    # single calls ---------------------------------------------------------------------------

    def check(self, res: Declared, olds: Mapping[str, Any]) -> dict[str, Any]:
        request = provider_pb2.CheckRequest(
            urn=res.urn,
            olds=to_struct(olds),
            news=to_struct(res.inputs),
            name=res.name,
            type=res.type,
        )
        reply = self._call("Check", res, request)
        if reply.failures:
            raise CheckFailedError(res.name, [(f.property, f.reason) for f in reply.failures])
        return from_struct(reply.inputs)

    def diff(self, res: Declared, entry: StateEntry, news: Mapping[str, Any]) -> Any:
        request = provider_pb2.DiffRequest(**_change(res, entry, news))
        return self._call("Diff", res, request)

    def create(self, res: Declared, inputs: Mapping[str, Any]) -> None:
        request = provider_pb2.CreateRequest(
            urn=res.urn, properties=to_struct(inputs), name=res.name, type=res.type
        )
        reply = self._call("Create", res, request)
        self._record(res, reply.id, inputs, reply.properties)

    def update(self, res: Declared, entry: StateEntry, news: Mapping[str, Any]) -> None:
        request = provider_pb2.UpdateRequest(**_change(res, entry, news))
        reply = self._call("Update", res, request)
        self._record(res, entry.id, news, reply.properties)

    def delete(self, name: str) -> None:
        entry, res = self._existing(name)
        request = provider_pb2.DeleteRequest(
            **_stored(name, res, entry), old_inputs=to_struct(entry.inputs)
        )
        self._call("Delete", res, request)
        del self.state[name]

    def read(self, name: str) -> None:
        entry, res = self._existing(name)
        request = provider_pb2.ReadRequest(
            **_stored(name, res, entry), inputs=to_struct(entry.inputs)
        )
        reply = self._call("Read", res, request)
        if not reply.id:
            del self.state[name]
            return
        inputs = from_struct(reply.inputs) if reply.HasField("inputs") else entry.inputs
        self._record(res, reply.id, inputs, reply.properties)

    def _existing(self, name: str) -> tuple[StateEntry, Declared]:
        """A resource in state, as the declaration it was created from."""
        entry = self.state[name]
        return entry, Declared(
            name, entry.type, entry.inputs, entry.property_deps, entry.depends_on
        )

    def _record(
        self, res: Declared, id_: str, inputs: Mapping[str, Any], outputs: struct_pb2.Struct
    ) -> None:
        self.state[res.name] = StateEntry(
            id_, res.type, dict(inputs), from_struct(outputs), res.property_deps, res.depends_on
        )

    def _call(self, name: str, res: Declared, request: Any) -> Any:
        self.calls.append(f"{name}:{res.name}")
        reply = self.provider.call(name, request)
        if self.after_each_change is not None and name in ("Create", "Update", "Delete"):
            self.after_each_change(f"{name}:{res.name}")
        return reply

    # operations -----------------------------------------------------------------------------

    def preview(self, resources: Iterable[Declared]) -> dict[str, str]:
        """Check (and Diff for existing resources); nothing is created. Returns name -> step."""
        plan: dict[str, str] = {}
        with self.command():
            return self._preview(resources, plan)

    def _preview(self, resources: Iterable[Declared], plan: dict[str, str]) -> dict[str, str]:
        for res in resources:
            entry = self.state.get(res.name)
            checked = self.check(res, entry.inputs if entry else {})
            plan[res.name] = (
                "create" if entry is None else self._step(self.diff(res, entry, checked))
            )
        return plan

    def up(self, resources: Iterable[Declared]) -> dict[str, str]:
        """One `pulumi up`: steps in dependency order (a level's resources in parallel), then
        the deletion of what the program no longer declares, dependents first."""
        declared = {r.name: r for r in resources}
        steps: dict[str, str] = {}
        levels = dependency_levels({n: r.depends_on for n, r in declared.items()})
        with self.command(), ThreadPoolExecutor(self.parallel) as pool:
            for level in levels:
                todo = [declared[n] for n in level]
                steps.update(zip(level, pool.map(self._up_one, todo), strict=True))
            gone = [name for name in self.state if name not in declared]
            self._delete_in_order(gone, pool)
        steps.update({name: "delete" for name in gone})
        return steps

    def _up_one(self, res: Declared) -> str:
        entry = self.state.get(res.name)
        checked = self.check(res, entry.inputs if entry else {})
        if entry is None:
            self.create(res, checked)
            return "create"
        diff = self.diff(res, entry, checked)
        step = self._step(diff)
        if step == "update":
            self.update(res, entry, checked)
        elif step == "replace":
            fresh = self.check(res, {})
            if not diff.deleteBeforeReplace:
                raise AssertionError("this harness models delete-before-replace replacements only")
            self._delete_replaced_dependents(res.name)
            self.delete(res.name)
            self.create(res, fresh)
        return step

    def _delete_replaced_dependents(self, name: str) -> None:
        """The engine's dependent replacement: before `name` is deleted to be replaced, every
        resource whose inputs come from it is diffed with those inputs unknown, and deleted
        first (its own dependents before it) when that diff asks for replacement. The program's
        later steps create it again."""
        for dependent, entry in list(self.state.items()):
            props = [p for p, deps in entry.property_deps.items() if name in deps]
            if not props:
                continue
            _, res = self._existing(dependent)
            news = {**entry.inputs, **dict.fromkeys(props, UNKNOWN)}
            if self.diff(res, entry, news).replaces:
                self._delete_replaced_dependents(dependent)
                self.delete(dependent)

    def _delete_in_order(self, names: list[str], pool: ThreadPoolExecutor) -> None:
        deps = {n: {d for d in self.state[n].depends_on if d in names} for n in names}
        for level in reversed(dependency_levels(deps)):
            list(pool.map(self.delete, level))

    def refresh(self) -> None:
        with self.command(), ThreadPoolExecutor(self.parallel) as pool:
            list(pool.map(self.read, list(self.state)))

    def destroy(self) -> None:
        with self.command(), ThreadPoolExecutor(self.parallel) as pool:
            self._delete_in_order(list(self.state), pool)

    @staticmethod
    def _step(diff: Any) -> str:
        if diff.replaces:
            return "replace"
        if diff.changes == provider_pb2.DiffResponse.DIFF_SOME:
            return "update"
        return "same"

"""State integrity through the real `pulumi` CLI: a reply we are not sure of never costs a model.

A wrong URL, another account's key or a killed process must leave state and Convai agreeing, or
stop with an error that says what to do; never "succeed" by dropping what Convai still holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from convai_provider.api.wire import LIST_PATH, REGISTER_PATH
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, live, recovered, stored_endpoint_key
from testkit.hostile_server import http_answer, serve_answer
from testkit.processes import command_line, end_session, session_members
from testkit.pulumi_cli import PulumiProject
from testkit.stacks import declared_model as model
from testkit.stacks import external_endpoint, product_project
from testkit.waiting import wait_for

ENDPOINT_KEY = "sk-integrity-endpoint-6e02b1"


@pytest.fixture
def project(tmp_path: Path, cli_bin: Path, convai: EmulatorProcess) -> Iterator[PulumiProject]:
    """The product's program; Convai's URL and key come from the environment, so a test can
    point a later command elsewhere (refresh and destroy reuse the config stored in state)."""
    env = {"CONVAI_API_KEY": CONVAI_KEY, "CONVAI_BASE_URL": convai.url}
    with product_project(tmp_path, cli_bin, env, ENDPOINT_KEY) as proj:
        yield proj


def stack(*models: dict[str, Any]) -> dict[str, Any]:
    return {
        "convai-models:endpoints": [external_endpoint()],
        "convai-models:models": list(models),
    }


def state_models(project: PulumiProject) -> list[str]:
    return sorted(
        name
        for name, resource in project.resources().items()
        if resource["type"].endswith(":PrivateModel")
    )


HTML_404 = http_answer(404, raw_body=b"<html><body><h1>404 Not Found</h1>nginx</body></html>")


@contextmanager
def wrong_convai(kind: str, convai: EmulatorProcess) -> Iterator[str]:
    """A base URL that is not Convai's API root: Convai's own host under a wrong path prefix
    (the emulator answers unknown paths with its error envelope), or a proxy's HTML 404."""
    if kind == "path prefix":
        yield f"{convai.url}/api"
    else:
        with serve_answer(HTML_404) as url:
            yield url


# A 404 is "gone" only when a list from the same Convai confirms it ------------------------------


@pytest.mark.parametrize("kind", ["path prefix", "proxy 404 page"])
def test_destroy_through_a_wrong_base_url_fails_and_state_keeps_every_model(
    project: PulumiProject, convai: EmulatorProcess, kind: str
) -> None:
    project.configure(stack(model("alpha"), model("beta")))
    project.up()
    with wrong_convai(kind, convai) as url:
        project.env["CONVAI_BASE_URL"] = url
        done = project.destroy(check=False)
    assert done.returncode != 0, done.stdout
    assert "HTTP 404" in done.stdout and "Nothing was dropped" in done.stdout
    assert "Traceback" not in done.stdout
    assert state_models(project) == ["alpha", "beta"]
    assert sorted(live(convai)) == ["alpha", "beta"]
    project.env["CONVAI_BASE_URL"] = convai.url
    project.destroy()
    assert state_models(project) == [] and live(convai) == {}


# Another account's key never drops a model ---------------------------------------------------


OTHER_ACCOUNT_KEY = "convai-other-account-key-90c4e7"


def test_refresh_or_up_with_another_accounts_key_keeps_every_model(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(model("alpha"), model("beta")))
    project.up()
    fingerprints = [
        r["outputs"]["convai_key_fingerprint"]
        for r in project.resources().values()
        if r["type"].endswith(":PrivateModel")
    ]
    assert all("ciphertext" in f for f in fingerprints)  # a secret in state, and no key in it
    project.env["CONVAI_API_KEY"] = OTHER_ACCOUNT_KEY  # a wrong CI secret
    for command in (("refresh", "--yes", "--skip-preview"), ("up", "--yes", "--refresh")):
        done = project.run(*command, check=False)
        assert done.returncode != 0, done.stdout
        assert "is not the one this model was created with" in done.stdout
        assert OTHER_ACCOUNT_KEY not in done.stdout
        assert state_models(project) == ["alpha", "beta"]
    project.env["CONVAI_API_KEY"] = CONVAI_KEY
    project.run("preview", "--expect-no-changes", "--refresh")
    assert sorted(live(convai)) == ["alpha", "beta"]


# A provider process killed after its registers landed --------------------------------------------


def provider_processes(session: int) -> list[int]:
    """The live dynamic provider processes (`python -u -m pulumi.dynamic`) of a CLI's session (it
    is started in one of its own). Pulumi puts its plugins in process groups of their own: only
    the session finds them all."""
    return [pid for pid in session_members(session) if b"pulumi.dynamic" in command_line(pid)]


def hold_creates_after_their_registers_land(
    convai: EmulatorProcess, count: int, seconds: float
) -> None:
    """The next `count` registers land but their replies are lost: each retry meets 409, which
    is settled from a list that takes `seconds`. So a create stays in flight with its model in
    Convai (otherwise a create ends with its register: it lists nothing)."""
    convai.inject(path=REGISTER_PATH, drop_after_commit=True, count=count)
    convai.inject(path=LIST_PATH, latency_ms=int(seconds * 1000))


def test_a_provider_killed_after_its_registers_landed_converges_by_the_named_adopt_path(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    models = [model("alpha"), model("beta")]
    project.configure(stack(*models))
    hold_creates_after_their_registers_land(convai, 2, 30)
    cli = project.start("up", "--yes", "--skip-preview")
    try:
        landed = lambda: all(stored_endpoint_key(convai, g) for g in ("alpha", "beta"))  # noqa: E731
        wait_for(landed, "both registers to land")
        (provider,) = provider_processes(cli.pid)
        os.kill(provider, signal.SIGKILL)  # the OOM killer, mid-create
        output, _ = cli.communicate(timeout=120)
    finally:
        end_session(cli.pid)
    assert cli.returncode != 0, output
    convai.clear_faults()
    assert sorted(live(convai)) == ["alpha", "beta"]
    assert project.pending_operations() == []  # nothing for `recover` to settle
    assert state_models(project) == []

    refused = project.up(check=False)
    assert refused.returncode != 0
    for group in ("alpha", "beta"):
        assert f"Convai holds '{group}' exactly as declared" in refused.stdout
        assert f"set `adopt_existing: true` on model '{group}'" in refused.stdout
    assert "Traceback" not in refused.stdout

    project.configure(stack(*(m | {"adopt_existing": True} for m in models)))
    project.up()
    project.configure(stack(*models))
    project.run("preview", "--expect-no-changes", "--refresh")
    assert state_models(project) == ["alpha", "beta"] and sorted(live(convai)) == ["alpha", "beta"]
    project.destroy()
    assert live(convai) == {}


# Provider processes left by a killed CLI end by themselves ----------------------------------------

HELD_PROGRAM = Path(__file__).parent / "fixtures" / "model-then-hold"


def loading_our_provider(pid: int) -> bool:
    """Whether a provider process has begun to import our provider, which the engine's first
    call unpickles: pydantic's compiled core, which the SDK never loads, is mapped."""
    try:
        return b"pydantic_core" in Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return False


def at(
    cli: subprocess.Popen[str], moment: Callable[[], bool], what: str, poll: float = 0.1
) -> subprocess.Popen[str]:
    """`cli` once `moment` has come; a moment that never comes ends the CLI's session."""
    try:
        wait_for(moment, what, poll=poll)
    except BaseException:
        end_session(cli.pid)
        raise
    return cli


def before_its_first_call(project: PulumiProject, convai: EmulatorProcess) -> subprocess.Popen[str]:
    project.configure(stack(model("alpha")))
    cli = project.start("up", "--yes", "--skip-preview")
    return at(cli, lambda: bool(provider_processes(cli.pid)), "the provider to start", 0.005)


def while_it_loads_our_provider(
    project: PulumiProject, convai: EmulatorProcess
) -> subprocess.Popen[str]:
    """The engine's first call has arrived; configure has not run (nor had the engine's answer)."""
    project.configure(stack(model("alpha")))
    cli = project.start("up", "--yes", "--skip-preview")
    loading = lambda: any(map(loading_our_provider, provider_processes(cli.pid)))  # noqa: E731
    return at(cli, loading, "the provider to load ours", 0.005)


def configured_before_any_create(
    project: PulumiProject, convai: EmulatorProcess
) -> subprocess.Popen[str]:
    """A preview whose program holds once the engine has checked its model: the provider is
    configured, idle, and its engine alive."""
    (project.dir / "held").mkdir()
    ready = project.dir / "held-ready"
    held = PulumiProject(
        project.dir / "held",
        project.bin,
        {
            "CONVAI_API_KEY": CONVAI_KEY,
            "CONVAI_BASE_URL": convai.url,
            "HOLD_READY_FILE": str(ready),
        },
        main=HELD_PROGRAM,
    )
    cli = held.start("preview")
    return at(cli, ready.exists, "the engine to check the model")


def during_a_create(project: PulumiProject, convai: EmulatorProcess) -> subprocess.Popen[str]:
    project.configure(stack(model("alpha")))
    hold_creates_after_their_registers_land(convai, 1, 5)  # in flight when the CLI dies
    cli = project.start("up", "--yes", "--skip-preview")
    return at(cli, lambda: bool(stored_endpoint_key(convai, "alpha")), "the register to land")


MOMENTS: dict[str, Callable[[PulumiProject, EmulatorProcess], subprocess.Popen[str]]] = {
    "before its first call": before_its_first_call,
    "while it loads our provider": while_it_loads_our_provider,
    "configured, before any create": configured_before_any_create,
    "during a create": during_a_create,
}
KILLS: dict[str, Callable[[int], None]] = {
    "the CLI alone": lambda cli: os.kill(cli, signal.SIGKILL),
    # What a closed terminal signals: the foreground group, which is the CLI's own; the CLI
    # starts each plugin in a group of its own.
    "the CLI's group": lambda cli: os.killpg(cli, signal.SIGKILL),
}


@pytest.mark.parametrize("kill", KILLS)
@pytest.mark.parametrize("moment", MOMENTS)
def test_the_provider_of_a_killed_cli_ends_by_itself(
    project: PulumiProject, convai: EmulatorProcess, moment: str, kill: str
) -> None:
    cli = MOMENTS[moment](project, convai)
    try:
        providers = set(provider_processes(cli.pid))
        KILLS[kill](cli.pid)  # its provider is left running
        cli.communicate(timeout=60)
        # The test's own deadline, not a speed: the provider finishes what it has in flight (a
        # create: 5 s), then notices the engine is gone (docs/state-integrity.md).
        gone = lambda: not providers & set(provider_processes(cli.pid))  # noqa: E731
        wait_for(gone, "the provider to end", 120)
    finally:
        end_session(cli.pid)  # the language host, which is not ours
    convai.clear_faults()
    if moment == "during a create":
        assert sorted(live(convai)) == ["alpha"]  # the create it had sent landed


# A CLI killed during a replacement ----------------------------------------------------------------


def test_a_cli_killed_during_a_replacement_is_settled_without_a_duplicate_urn(
    project: PulumiProject, convai: EmulatorProcess, tmp_path: Path
) -> None:
    project.configure(stack(model("alpha")))
    project.up()
    replaced = stack(model("alpha"))
    replaced["convai-models:endpoints"][0]["model_name"] = "qwen-7b"  # model_name replaces
    project.configure(replaced)
    convai.clear_counts()
    hold_creates_after_their_registers_land(convai, 1, 30)  # the replacement's create hangs
    cli = project.start("up", "--yes", "--skip-preview")
    try:
        wait_for(
            lambda: (
                convai.request_counts().get(REGISTER_PATH, 0) >= 1
                and bool(stored_endpoint_key(convai, "alpha"))
            ),
            "the replacement's register to land",
        )
    finally:
        end_session(cli.pid)  # the CLI, its provider and language host
        cli.communicate(timeout=60)
    convai.clear_faults()
    assert live(convai)["alpha"]["model_name"] == "qwen-7b"
    (old,) = [r for r in project.export()["deployment"]["resources"] if r.get("id") == "alpha"]
    assert old.get("pendingReplacement") is True  # what Pulumi 3.274 leaves: the old entry...
    assert [op["type"] for op in project.pending_operations()] == ["creating"]  # ...and this

    project.run("cancel", "--yes")
    recover = recovered(project, convai, tmp_path)  # its import was refused before: a duplicate URN
    assert recover.returncode == 0, recover.stderr
    project.refresh()
    project.run("preview", "--expect-no-changes")
    assert state_models(project) == ["alpha"] and list(live(convai)) == ["alpha"]
    project.destroy()
    assert live(convai) == {}


# A fast `up` (PULUMI_SKIP_CHECKPOINTS) killed half way ------------------------------------------


def test_a_killed_fast_up_loses_nothing_and_duplicates_nothing(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    """With checkpoints skipped the engine records nothing until the end: the kill leaves no
    pending create to prove the landed models are this stack's. The next `up` must not take them
    (a first attempt's 409), must not register them twice, and must name the adopt path; nothing
    is lost (docs/big-stacks.md)."""
    groups = [f"m{i:02}" for i in range(12)]
    models = [model(g) for g in groups]
    project.configure(stack(*models))
    project.env["PULUMI_SKIP_CHECKPOINTS"] = "true"
    convai.inject(path=REGISTER_PATH, latency_ms=1000)  # four at a time: three waves
    cli = project.start("up", "--yes", "--skip-preview")
    try:
        wait_for(lambda: len(live(convai)) >= 4, "the first wave of registers to land")
        providers = provider_processes(cli.pid)
        os.kill(cli.pid, signal.SIGKILL)  # half way: a killed CI runner's CLI
        cli.communicate(timeout=60)
        gone = lambda: not set(providers) & set(provider_processes(cli.pid))  # noqa: E731
        wait_for(gone, "the provider to finish its registers in flight and end", 120)
    finally:
        end_session(cli.pid)
    convai.clear_faults()
    landed = sorted(live(convai))
    assert 4 <= len(landed) < len(groups), landed
    assert state_models(project) == [] and project.pending_operations() == []

    project.run("cancel", "--yes")  # the killed CLI's lock
    refused = project.up("--continue-on-error", check=False)
    assert refused.returncode != 0
    for group in landed:
        assert f"Convai holds '{group}' exactly as declared" in refused.stdout, refused.stdout
        assert f"set `adopt_existing: true` on model '{group}'" in refused.stdout
    assert state_models(project) == sorted(set(groups) - set(landed))  # none taken unproven
    assert sorted(live(convai)) == groups  # each once: Convai refuses a name twice

    project.configure(
        stack(*(m | {"adopt_existing": m["model_group_name"] in landed} for m in models))
    )
    project.up()
    project.configure(stack(*models))
    project.run("preview", "--expect-no-changes", "--refresh")
    assert state_models(project) == groups and sorted(live(convai)) == groups
    project.destroy()
    assert live(convai) == {}

"""What a vLLM endpoint serves is pinned: the model's commit, the image's digest, and the names
Convai may ask for while either changes (docs/vllm.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from convai_stack.stack_config import (
    PLACEHOLDER,
    StackConfigError,
    VllmEndpoint,
    parse_stack_config,
    project_values,
    read_stack_file,
    stack_file,
)
from convai_stack.vllm_weights import DOWNLOAD, DOWNLOADED_PATH, IGNORED_FILES
from testkit.engine import RecordingMocks
from testkit.stacks import TEST_PINS, as_runtime_config, load_stack_file
from tests.test_stacks import (
    ROOT,
    _endpoints,
    assert_refused_before_any_resource,
    broken,
    run_stack,
    secrets,
    vllm_container,
    vllm_endpoints,
    workload_spec,
)

HUB_COMMANDS = "curl -s https://huggingface.co/api/models/{model}/revision/main | jq -r .sha"
DIGEST_COMMANDS = ("crane digest", "docker buildx imagetools inspect", "skopeo inspect")


def committed(stack: str) -> dict[str, str]:
    """The stack file exactly as committed, placeholders and all."""
    return {**as_runtime_config(read_stack_file(stack_file(stack, ROOT))), **secrets(stack)}


# Point 4: pinned weights -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_committed_placeholders_are_refused_at_preview_saying_how_to_find_each(
    stack: str,
) -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_stack(stack, committed(stack), mocks)
    message = str(caught.value)
    assert mocks.registrations == []  # refused before anything is declared
    declared = load_stack_file(stack_file(stack, ROOT))  # the schema reads the file
    endpoints = [e for e in declared.endpoints if isinstance(e, VllmEndpoint)]
    assert endpoints == declared.endpoints
    for index, endpoint in enumerate(endpoints):
        assert endpoint.revision == PLACEHOLDER
        assert (
            f"convai-models:endpoints[{index}].revision: is the placeholder {PLACEHOLDER}"
            in message
        )
        assert HUB_COMMANDS.format(model=endpoint.model) in message
        assert f"https://huggingface.co/{endpoint.model}/commits/main" in message
    digests = [i for i, e in enumerate(endpoints) if e.image_digest == PLACEHOLDER]
    assert digests == ([0, 1] if stack == "prod" else [])
    for index in digests:
        assert f"convai-models:endpoints[{index}].image_digest: is the placeholder" in message
        assert all(command in message for command in DIGEST_COMMANDS)


@pytest.mark.parametrize(
    "revision",
    ["main", "v1.0", "5206a32", TEST_PINS["revision"].upper(), TEST_PINS["revision"] + "0"],
)
def test_a_revision_that_is_not_a_full_commit_is_refused_naming_the_field(revision: str) -> None:
    config = broken(lambda c: _endpoints(c)[0].update(revision=revision))
    expected = (
        f"convai-models:endpoints[0].revision: must be a full 40-hex commit hash (got "
        f"{revision!r}): a branch or tag such as main moves"
    )
    assert_refused_before_any_resource(config, expected)


def test_an_endpoint_without_a_revision_is_refused_saying_how_to_find_it() -> None:
    config = broken(lambda c: _endpoints(c)[0].pop("revision"))
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(project_values(config))
    assert "convai-models:endpoints[0].revision: is required" in str(caught.value)
    assert HUB_COMMANDS.format(model="meta-llama/Llama-3.1-8B-Instruct") in str(caught.value)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_an_init_container_downloads_the_revision_and_vllm_serves_it_offline(stack: str) -> None:
    run = run_stack(stack)
    for endpoint in vllm_endpoints(stack):
        pod = workload_spec(run, endpoint)["template"]["spec"]
        (download,) = pod["initContainers"]
        vllm = vllm_container(run, endpoint)
        args = vllm["args"]
        assert args[args.index("--revision") + 1] == endpoint.revision == TEST_PINS["revision"]
        env = {e["name"]: e for e in vllm["env"]}
        assert env["HF_HUB_OFFLINE"]["value"] == "1"  # a restart asks the model hub nothing
        assert "HF_TOKEN" not in env  # needed only to download
        fetch = {e["name"]: e for e in download["env"]}
        assert fetch["MODEL_ID"]["value"] == endpoint.model
        assert fetch["MODEL_REVISION"]["value"] == endpoint.revision
        assert fetch["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "HF_TOKEN"
        assert fetch["HF_HOME"]["value"] == env["HF_HOME"]["value"]
        assert fetch["DOWNLOAD_DEADLINE"]["value"] == str(endpoint.download_deadline)
        # Onto the replica's own claim, where vLLM reads it; with the same image (one digest).
        assert download["volumeMounts"] == [
            m for m in vllm["volumeMounts"] if m["name"] == "model-cache"
        ]
        assert download["image"] == vllm["image"]
        assert "nvidia.com/gpu" not in download["resources"]["limits"]
        assert download["securityContext"] == vllm["securityContext"]


def test_without_an_hf_token_the_download_goes_without_one() -> None:
    config = broken(lambda c: _endpoints(c)[0].pop("hf_token_config"))
    config.pop("convai-models:hfToken")
    run = run_stack("staging", config)
    (endpoint,) = vllm_endpoints("staging")
    (download,) = workload_spec(run, endpoint)["template"]["spec"]["initContainers"]
    assert "HF_TOKEN" not in {e["name"] for e in download["env"]}


# The init container's program, run with a stand-in for huggingface_hub --------------------------

STAND_IN = """\
import json, os, pathlib, time
def snapshot_download(repo_id, *, revision, ignore_patterns):
    log = pathlib.Path(os.environ["STAND_IN_LOG"])
    log.write_text(log.read_text() + json.dumps([repo_id, revision, ignore_patterns]) + "\\n")
    behaviour = os.environ.get("STAND_IN", "download")
    if behaviour == "fail":
        raise OSError("the hub is unreachable")
    if behaviour == "hang":
        time.sleep(60)
    if behaviour == "trickle":  # slow, but every tenth of a second a few bytes more
        blob = pathlib.Path(os.environ["HF_HOME"], "hub", "blob.incomplete")
        blob.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(40):  # 4 s: longer than the stall limit the test sets
            with blob.open("ab") as out:
                out.write(b"x" * 1000)
            time.sleep(0.1)
    snapshot = pathlib.Path(os.environ["HF_HOME"], "hub", repo_id.replace("/", "--"), revision)
    snapshot.mkdir(parents=True)
    return str(snapshot)
"""
"""huggingface_hub's snapshot_download as the program calls it: it records each call, then
makes the snapshot directory, fails, hangs, or trickles bytes onto the claim before finishing."""

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def download(
    tmp_path: Path,
    behaviour: str = "download",
    deadline: int = 60,
    stall_after: float = 60,
    report_every: float = 60,
) -> Any:
    library = tmp_path / "library" / "huggingface_hub"
    library.mkdir(parents=True, exist_ok=True)
    (library / "__init__.py").write_text(STAND_IN)
    log = tmp_path / "calls.jsonl"
    if not log.exists():
        log.write_text("")
    home = tmp_path / "claim"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(library.parent),
        "HF_HOME": str(home),
        "MODEL_ID": MODEL,
        "MODEL_REVISION": TEST_PINS["revision"],
        "DOWNLOADED_PATH": str(home / Path(DOWNLOADED_PATH).name),
        "IGNORED_FILES": ",".join(IGNORED_FILES),
        "DOWNLOAD_DEADLINE": str(deadline),
        "STALL_AFTER": str(stall_after),
        "REPORT_EVERY": str(report_every),
        "STAND_IN": behaviour,
        "STAND_IN_LOG": str(log),
    }
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, log.read_text().splitlines()


def test_the_download_runs_once_per_claim_and_a_restart_asks_the_hub_nothing(
    tmp_path: Path,
) -> None:
    first, calls = download(tmp_path)
    assert first.returncode == 0, first.stderr
    assert calls == [f'["{MODEL}", "{TEST_PINS["revision"]}", ["original/*"]]']
    again, calls = download(tmp_path, behaviour="fail")  # the hub would fail: not asked
    assert again.returncode == 0, again.stderr
    assert len(calls) == 1
    assert "is on this claim already" in again.stdout


def test_a_failed_download_is_not_taken_for_a_whole_one(tmp_path: Path) -> None:
    failed, _ = download(tmp_path, behaviour="fail")
    assert failed.returncode != 0
    assert "the hub is unreachable" in failed.stderr
    retried, calls = download(tmp_path)  # the container's restart tries again
    assert retried.returncode == 0, retried.stderr
    assert len(calls) == 2


def test_a_download_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    stopped, calls = download(tmp_path, behaviour="hang", deadline=1)
    assert stopped.returncode == -14  # SIGALRM: the kubelet restarts the container
    assert len(calls) == 1
    assert not (tmp_path / "claim" / "pinned").exists()


def test_a_stalled_download_is_stopped_before_its_deadline(tmp_path: Path) -> None:
    # No byte more on the claim for STALL_AFTER: stopped, to resume on the restart, rather than
    # waiting out the whole download_timeout (an hour for prod's 70B) on a dead connection.
    stalled, calls = download(tmp_path, behaviour="hang", stall_after=1, report_every=0.2)
    assert stalled.returncode == 3, stalled.stderr
    assert "no byte more for 1 s: stopping, to resume on restart" in stalled.stdout
    assert "GB on the claim" in stalled.stdout  # progress is logged meanwhile
    assert len(calls) == 1
    assert not (tmp_path / "claim" / "pinned").exists()


def test_a_slow_download_that_progresses_is_not_stopped(tmp_path: Path) -> None:
    slow, _ = download(tmp_path, behaviour="trickle", stall_after=2, report_every=0.2)
    assert slow.returncode == 0, slow.stdout + slow.stderr
    assert "is in" in slow.stdout
    assert "no byte more" not in slow.stdout


# Point 5: image digests --------------------------------------------------------------------------


def test_prod_requires_image_digests() -> None:
    assert read_stack_file(stack_file("prod", ROOT))["convai-models:requireImageDigest"] is True


def test_a_tag_only_image_is_refused_where_digests_are_required() -> None:
    def mutate(config: dict[str, Any]) -> None:
        config["convai-models:requireImageDigest"] = True

    config = broken(mutate)
    expected = (
        "convai-models:endpoints[0].image_digest: requireImageDigest is on and "
        "vllm/vllm-openai:v0.33.0 is named by its tag only, which can be moved to other bits; "
        "get the digest of vllm/vllm-openai:v0.33.0 with `crane digest vllm/vllm-openai:v0.33.0`"
    )
    assert_refused_before_any_resource(config, expected)

    def with_digest(config: dict[str, Any]) -> None:
        mutate(config)
        _endpoints(config)[0]["image_digest"] = TEST_PINS["image_digest"]

    run = run_stack("staging", broken(with_digest))
    (endpoint,) = vllm_endpoints("staging")
    image = f"vllm/vllm-openai:v0.33.0@{TEST_PINS['image_digest']}"
    assert vllm_container(run, endpoint)["image"] == image


# Point 6: several served names -------------------------------------------------------------------


def test_vllm_answers_to_the_served_name_first_and_to_each_other_name() -> None:
    config = broken(lambda c: _endpoints(c)[0].update(also_served_as=["llama-3.1-8b-old"]))
    run = run_stack("staging", config)
    (endpoint,) = vllm_endpoints("staging")
    args = vllm_container(run, endpoint)["args"]
    start = args.index("--served-model-name") + 1
    assert args[start : start + 2] == [endpoint.served_model_name, "llama-3.1-8b-old"]
    assert args[start + 2].startswith("--")
    # Convai is given the served name, never another one.
    (model,) = [r for r in run.registrations if r.type.endswith("PrivateModel")]
    assert model.inputs["model_name"] == endpoint.served_model_name


@pytest.mark.parametrize("names", [["llama-3.1-8b"], ["old", "old"]])
def test_a_name_served_twice_is_refused(names: list[str]) -> None:
    config = broken(lambda c: _endpoints(c)[0].update(also_served_as=names))
    with pytest.raises(StackConfigError, match=r"endpoints\[0\]\.also_served_as: '[a-z0-9.-]+' "):
        parse_stack_config(project_values(config))

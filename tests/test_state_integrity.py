"""State integrity through the real `pulumi` CLI: a reply we are not sure of never costs a model.

A wrong URL, another account's key or a killed process must leave state and Convai agreeing, or
stop with an error that says what to do; never "succeed" by dropping what Convai still holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, live
from testkit.hostile_server import http_answer, serve_answer
from testkit.pulumi_cli import PulumiProject

ENDPOINT_KEY = "sk-integrity-endpoint-6e02b1"


@pytest.fixture
def project(tmp_path: Path, cli_bin: Path, convai: EmulatorProcess) -> PulumiProject:
    """The product's program; Convai's URL and key come from the environment, so a test can
    point a later command elsewhere (refresh and destroy reuse the config stored in state)."""
    proj = PulumiProject(
        tmp_path, cli_bin, {"CONVAI_API_KEY": CONVAI_KEY, "CONVAI_BASE_URL": convai.url}
    )
    proj.set_secret("endpointKey", ENDPOINT_KEY)
    return proj


def model(group: str, **fields: Any) -> dict[str, Any]:
    return {
        "model_group_name": group,
        "endpoint": "llm",
        "display_name": f"{group} model",
        "verify_endpoint": False,  # the preflight has tests of its own
        **fields,
    }


def stack(*models: dict[str, Any]) -> dict[str, Any]:
    return {
        "convai-models:endpoints": [
            {
                "name": "llm",
                "kind": "external",
                "base_url": "https://llm.example.com/v1",
                "model_name": "llama-3.1-8b",
                "api_key_config": "endpointKey",
            }
        ],
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

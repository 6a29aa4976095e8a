"""scripts/install-kube finds the control plane its pins name, or says how to get one (the Go
build itself runs in scripts/test on a machine without a cached one; it takes half an hour)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from testkit.kube import pin

ROOT = Path(__file__).resolve().parent.parent
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "pulumi-resource-kubernetes",
)


def install(
    tmp_path: Path, *args: str, path: str = "/usr/bin:/bin", root: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [str(shutil.which("bash")), str(root / "scripts" / "install-kube"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def cache_dir(tmp_path: Path, root: Path = ROOT) -> Path:
    """Where the script looks, as its refusal names it."""
    done = install(tmp_path, "--no-build", root=root)
    assert done.returncode == 3, done.stderr
    found = re.search(r"for these pins in (\S+): run scripts/install-kube", done.stderr)
    assert found, done.stderr
    return Path(found.group(1))


def fake_build(cache: Path) -> Path:
    for name in BINARIES:
        tool = cache / "bin" / name
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    stage = cache / "kwok-stages" / "pod" / "fast" / "pod-ready.yaml"
    stage.parent.mkdir(parents=True)
    stage.write_text("kind: Stage\n")
    shutil.copy(ROOT / "scripts" / "kube-versions", cache / "kube-versions")
    return cache / "bin"


def test_a_complete_build_for_the_pins_is_used(tmp_path: Path) -> None:
    cache = cache_dir(tmp_path)
    assert cache.parent == tmp_path / "cache" / "convai-models"
    bin_dir = fake_build(cache)
    done = install(tmp_path, "--no-build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(bin_dir)


def test_an_incomplete_build_is_not_used(tmp_path: Path) -> None:
    cache = cache_dir(tmp_path)
    (fake_build(cache) / "kwok").unlink()
    assert install(tmp_path, "--no-build").returncode == 3


def test_a_new_pin_of_what_is_built_looks_elsewhere_and_a_note_does_not(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "scripts", clone / "scripts")
    pins = clone / "scripts" / "kube-versions"
    before = cache_dir(tmp_path, clone)
    pins.write_text(pins.read_text() + "# a note\n")
    assert cache_dir(tmp_path, clone) == before
    pins.write_text(pins.read_text().replace("kwok=v0.8.0", "kwok=v0.7.0"))
    assert cache_dir(tmp_path, clone) != before


def test_without_go_it_says_how_to_get_it(tmp_path: Path) -> None:
    tools = tmp_path / "tools"  # what the script runs, and no go
    tools.mkdir()
    for tool in ("dirname", "sed", "tr", "sha256sum", "cut", "cat"):
        (tools / tool).symlink_to(str(shutil.which(tool)))
    done = install(tmp_path, path=str(tools))
    assert done.returncode == 1
    assert "Install Go 1.26 or newer" in done.stderr and done.stdout == ""


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    done = install(tmp_path, "--bogus")
    assert done.returncode == 2 and "unknown option '--bogus'" in done.stderr


def test_the_pins_and_the_docs_say_which_kubernetes_provider_the_tests_run_and_why() -> None:
    """The provider source the tests build is not the release production runs: the pins file and
    docs/kubernetes-tests.md both say which, why, and where the two differ."""
    pins = (ROOT / "scripts" / "kube-versions").read_text()
    docs = (ROOT / "docs" / "kubernetes-tests.md").read_text()
    source, release, plugin = (
        pin("pulumi_kubernetes_provider"),
        pin("pulumi_kubernetes_provider_release"),
        pin("pulumi_kubernetes_plugin"),
    )
    assert source.startswith("v4.0.0-")  # a pseudo-version: what the module proxy serves
    sdk = re.search(r"^pulumi_kubernetes==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert sdk is not None and sdk[1] == plugin  # stamped as the SDK's plugin version
    for text in (pins, docs):
        assert "pulumi-kubernetes#4328" in text
        assert "only at" in text  # why: the proxy serves that pseudo-version only
    assert f"about v{release}" in docs
    assert source in docs and plugin in docs

"""Pinned weights: an init container puts exactly the endpoint's revision of its model on the
replica's claim, and vLLM then starts offline from it.

So every replica serves the same weights under one name (a branch such as `main` moves between
two replicas' starts), and a restart needs no model hub: the hub is asked only until the revision
is on the claim once. The Hugging Face token goes to this container alone."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from convai_stack.stack_config import VllmEndpoint

from .vllm_pod import CACHE_PATH, CACHE_VOLUME, secret_env, unprivileged

HF_TOKEN_SECRET = "hf-token"
"""The Secret holding the Hugging Face token: a fixed name in the endpoint's namespace, so a new
token changes the Secret's content and never the pod template (no restart)."""
HF_TOKEN_KEY = "HF_TOKEN"

DOWNLOADED_PATH = f"{CACHE_PATH}/pinned"
"""Where the init container records each revision it downloaded whole: a snapshot directory
alone does not say so, since an interrupted download leaves one behind, part filled."""
IGNORED_FILES = ("original/*",)
"""What vLLM itself leaves out (its LoadConfig.ignore_patterns): the original checkpoints some
repos carry beside their safetensors (140 GB more for Llama 3.1 70B)."""

STALL_AFTER = 600
"""Seconds without a byte more on the claim after which the download is stopped (exit 3): the
kubelet restarts the container and huggingface_hub resumes, rather than the download waiting out
its whole deadline on a dead connection. Ten minutes: the hub's slowest legitimate pauses
(resolving a file, a retry after a reset) take seconds to a minute."""
REPORT_EVERY = 60
"""Seconds between the init container's progress lines (bytes on the claim, average rate)."""

DOWNLOAD = """\
import os, pathlib, signal, sys, threading, time
signal.alarm(int(os.environ["DOWNLOAD_DEADLINE"]))
model, revision = os.environ["MODEL_ID"], os.environ["MODEL_REVISION"]
done = pathlib.Path(os.environ["DOWNLOADED_PATH"], model.replace("/", "--"), revision)
if done.exists():
    print(f"{model} at {revision} is on this claim already: nothing to download")
    sys.exit(0)

def size(root):
    total = 0
    for file in root.rglob("*"):
        try:
            total += file.stat().st_size if file.is_file() else 0
        except OSError:
            pass  # renamed or removed while counted
    return total

def watch(root, stall, every):
    start = time.monotonic()
    first = last = size(root)
    moved = start
    while True:
        time.sleep(every)
        now, current = time.monotonic(), size(root)
        if current != last:
            last, moved = current, now
        rate = (current - first) / (now - start) / 1e6
        print(f"{current / 1e9:.1f} GB on the claim, {rate:.1f} MB/s since start", flush=True)
        if now - moved >= stall:
            print(f"no byte more for {stall:.0f} s: stopping, to resume on restart", flush=True)
            os._exit(3)

threading.Thread(
    target=watch,
    args=(
        pathlib.Path(os.environ["HF_HOME"]),
        float(os.environ["STALL_AFTER"]),
        float(os.environ["REPORT_EVERY"]),
    ),
    daemon=True,
).start()
from huggingface_hub import snapshot_download
print(f"downloading {model} at {revision}", flush=True)
path = snapshot_download(
    model, revision=revision, ignore_patterns=os.environ["IGNORED_FILES"].split(",")
)
done.parent.mkdir(parents=True, exist_ok=True)
done.write_text(path + "\\n")
print(f"{model} at {revision} is in {path}")
"""
"""The init container's program, run by the vLLM image's own Python and huggingface_hub (no
other image to pin). Values come from the environment, never spliced into the code. A watcher
logs progress and stops a download that has stalled (STALL_AFTER); the alarm bounds the whole
download by the endpoint's download_timeout. Stopped either way, the container is restarted and
huggingface_hub resumes the files it had begun."""


def download_container(endpoint: VllmEndpoint, with_hf_token: bool) -> k8s.core.v1.ContainerArgs:
    env = [
        k8s.core.v1.EnvVarArgs(name="HF_HOME", value=CACHE_PATH),
        k8s.core.v1.EnvVarArgs(name="MODEL_ID", value=endpoint.model),
        k8s.core.v1.EnvVarArgs(name="MODEL_REVISION", value=endpoint.revision),
        k8s.core.v1.EnvVarArgs(name="DOWNLOADED_PATH", value=DOWNLOADED_PATH),
        k8s.core.v1.EnvVarArgs(name="IGNORED_FILES", value=",".join(IGNORED_FILES)),
        k8s.core.v1.EnvVarArgs(name="DOWNLOAD_DEADLINE", value=str(endpoint.download_deadline)),
        k8s.core.v1.EnvVarArgs(name="STALL_AFTER", value=str(STALL_AFTER)),
        k8s.core.v1.EnvVarArgs(name="REPORT_EVERY", value=str(REPORT_EVERY)),
        k8s.core.v1.EnvVarArgs(name="HF_HUB_DISABLE_TELEMETRY", value="1"),
    ]
    if with_hf_token:
        # Read when this container starts: a rotated token reaches the next download, no restart.
        env.append(secret_env(HF_TOKEN_KEY, HF_TOKEN_SECRET))
    # The replica's CPU and memory, no GPU: a pod's request is the larger of its init
    # containers' and its containers' sum, so this schedules nothing more.
    resources = {"cpu": endpoint.cpu, "memory": endpoint.memory}
    return k8s.core.v1.ContainerArgs(
        name="download-weights",
        image=endpoint.image,
        command=["python3", "-c", DOWNLOAD],
        env=env,
        resources=k8s.core.v1.ResourceRequirementsArgs(limits=resources, requests=resources),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=CACHE_VOLUME, mount_path=CACHE_PATH)],
        security_context=unprivileged(),
    )

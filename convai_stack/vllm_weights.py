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

DOWNLOAD = """\
import os, pathlib, signal, sys
signal.alarm(int(os.environ["DOWNLOAD_DEADLINE"]))
model, revision = os.environ["MODEL_ID"], os.environ["MODEL_REVISION"]
done = pathlib.Path(os.environ["DOWNLOADED_PATH"], model.replace("/", "--"), revision)
if done.exists():
    print(f"{model} at {revision} is on this claim already: nothing to download")
    sys.exit(0)
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
other image to pin). Values come from the environment, never spliced into the code. The alarm
bounds the download by the endpoint's download_timeout; killed, the container is restarted and
huggingface_hub resumes the files it had begun."""


def download_container(endpoint: VllmEndpoint, with_hf_token: bool) -> k8s.core.v1.ContainerArgs:
    env = [
        k8s.core.v1.EnvVarArgs(name="HF_HOME", value=CACHE_PATH),
        k8s.core.v1.EnvVarArgs(name="MODEL_ID", value=endpoint.model),
        k8s.core.v1.EnvVarArgs(name="MODEL_REVISION", value=endpoint.revision),
        k8s.core.v1.EnvVarArgs(name="DOWNLOADED_PATH", value=DOWNLOADED_PATH),
        k8s.core.v1.EnvVarArgs(name="IGNORED_FILES", value=",".join(IGNORED_FILES)),
        k8s.core.v1.EnvVarArgs(name="DOWNLOAD_DEADLINE", value=str(endpoint.download_deadline)),
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

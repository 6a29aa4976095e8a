"""A throwaway Kubernetes control plane on 127.0.0.1, for running the stacks through a real API.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, from the bin directory
`scripts/install-kube` builds. kwok plays the GPU nodes (annotated `kwok.x-k8s.io/node=fake`, at
127.0.0.1) and their pods: it runs no container, and its stages turn scheduled pods Running and
Ready, provision and bind claims, give Ingresses a load-balancer address and mark cert-manager
Certificates Ready (kube_manifests/stages.yaml). Pod and Service addresses (10.244/16, 10.96/16)
are only data: no kubelet, kube-proxy or container exists to listen or dial there.

Every process runs in a session of its own and is ended with its group by `stop`, which fails if
one outlives it; each gets SIGKILL from the kernel if the process that started it dies first
(testkit/processes.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from convai_provider.emulator.process import StoppedOnExit

from .processes import die_with_parent, end_group
from .tls import TestCA, write_key
from .tools import MissingToolError, cached_bin

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = Path(__file__).resolve().parent / "kube_manifests"
NODES = ("kwok-gpu-0", "kwok-gpu-1")
"""The GPU nodes kwok plays (kube_manifests/cluster.yaml): prod's two GPU pools, one node each."""
KWOK_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"
MODULE_STAGES = ("node/fast", "node/heartbeat", "pod/fast", "volume/fast")
"""kwok's own stage sets (in the cache's kwok-stages/) that a node, its pods and claims need."""
CRDS = (
    "certificates.cert-manager.io",
    "ciliumnetworkpolicies.cilium.io",
    "podmonitors.monitoring.coreos.com",
    "httproutes.gateway.networking.k8s.io",
    "scaledobjects.keda.sh",
)
"""The kinds of kube_manifests/cluster.yaml and crds.yaml (scripts/vendor-crds): the stack's
optional resources are judged by the API server against them."""
SERVICE_RANGE = "10.96.0.0/16"
POD_RANGE = "10.244.0.0/16"
START_TIMEOUT = 90.0
"""Seconds from etcd's start to a Ready node (6-7 s on an idle 2-core machine)."""
STOP_TIMEOUT = 15.0
PORT_ATTEMPTS = 3
"""Starts tried, each on new ports, when a port picked free was taken before it was bound."""


class NoKubeError(MissingToolError):
    """No control plane binaries on this machine; the message says how to build them."""


class ControlPlaneError(Exception):
    """The control plane did not start, or a process outlived `stop`; the logs are named."""


def find_kube_bin() -> Path:
    """The control plane's bin directory: $CONVAI_KUBE_BIN, else what install-kube finds
    (never builds: a build takes half an hour)."""
    return cached_bin("CONVAI_KUBE_BIN", "install-kube", NoKubeError, "Kubernetes control plane")


def pin(key: str) -> str:
    """A value of scripts/kube-versions."""
    for line in (ROOT / "scripts" / "kube-versions").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == key and not line.startswith("#"):
            return value.strip()
    raise KeyError(f"no '{key}=' line in scripts/kube-versions")


def free_port() -> int:
    """A loopback port free now; another process may take it before ours binds it (`start`
    then starts again on new ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def processes_mentioning(marker: str) -> list[str]:
    """Processes (pid and command line) whose command line or environment contains `marker`:
    what a test's directory leaves running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker in cmdline or marker in environ:
            found.append(f"{entry.name}: {cmdline.strip()[:200]}")
    return found


class ControlPlane(StoppedOnExit):
    """Started by `start` (or `with`), on free loopback ports, with all its files in `directory`.

    `kubeconfig` holds one cluster and an admin user (group system:masters) under each name in
    `contexts`, so stacks that name their cluster's context (`kubernetes:context`) find it.
    """

    def __init__(self, bin_dir: Path, directory: Path, contexts: Sequence[str] = ()) -> None:
        self.bin = bin_dir
        self.dir = directory
        self.contexts = ("admin", *contexts)
        self.kubeconfig = directory / "kubeconfig"
        self.server = ""
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    # starting ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the control plane; again on new ports if another process took one of those
        `free_port` picked before etcd or the API server bound it."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            (self.dir / "logs").mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + START_TIMEOUT
            try:
                self._start(deadline)
                return
            except ControlPlaneError:
                self.stop()
                if attempt == PORT_ATTEMPTS or not self._lost_a_port():
                    raise
                self._set_aside(attempt)
            except BaseException:
                self.stop()
                raise

    def _lost_a_port(self) -> bool:
        return any(
            "address already in use" in log.read_text(errors="replace")
            for log in (self.dir / "logs").glob("*.log")
        )

    def _set_aside(self, attempt: int) -> None:
        """Keeps the failed attempt's logs beside the next one's; a fresh etcd data directory."""
        (self.dir / "logs").rename(self.dir / f"logs-attempt-{attempt}")
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        self._processes.clear()

    def _start(self, deadline: float) -> None:
        ca = TestCA(self.dir / "pki", "convai-models throwaway cluster CA")
        serving = ca.issue("apiserver", hosts=("127.0.0.1", "localhost", "10.96.0.1"))
        admin = ca.issue("admin", organization="system:masters", client=True)
        signing_key, public_key = self._service_account_keys()
        etcd_port, apiserver_port = free_port(), free_port()
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self._write_kubeconfig(ca.certificate, admin)
        self._spawn("etcd", *self._etcd_flags(etcd_port))
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={apiserver_port}",
            f"--tls-private-key-file={serving[0]}",
            f"--tls-cert-file={serving[1]}",
            f"--client-ca-file={ca.certificate}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={public_key}",
            f"--service-account-signing-key-file={signing_key}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=RBAC",
            # Loopback addresses are refused in Endpoints: the `kubernetes` Service gets none.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            f"--cert-dir={self.dir / 'pki'}",
        )
        self._wait_until_ready(ca.certificate, admin, deadline)
        # kwok resolves the kinds its stages name when it starts: the Certificate and HTTPRoute
        # kinds first.
        self.kubectl(
            "apply", "-f", str(MANIFESTS / "cluster.yaml"), "-f", str(MANIFESTS / "crds.yaml")
        )
        for crd in CRDS:
            self._wait_for(f"crd/{crd}", "Established", deadline)
        # Established comes before the API server publishes the kind's OpenAPI v3 path, which kwok
        # reads at start ("GroupVersion (cert-manager.io/v1) not found as OpenAPI V3 path").
        for path in ("apis/cert-manager.io/v1", "apis/gateway.networking.k8s.io/v1"):
            self._wait_for_openapi(path, deadline)
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            "kube-controller-manager",
            kubeconfig,
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={signing_key}",
            f"--root-ca-file={ca.certificate}",
            "--use-service-account-credentials=false",
        )
        # kwok does not schedule pods.
        self._spawn(
            "kube-scheduler",
            kubeconfig,
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
        )
        self._spawn(
            "kwok",
            kubeconfig,
            f"--config={self._kwok_stages()}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
            "--node-ip=127.0.0.1",
            f"--cidr={POD_RANGE}",
        )
        for node in NODES:
            self._wait_for(f"node/{node}", "Ready", deadline)
        self._check_running()  # kwok may mark the node Ready and still fail on a stage

    def _service_account_keys(self) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        public = self.dir / "pki" / "service-account.pub"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return write_key(key, self.dir / "pki" / "service-account-key.pem"), public

    def _etcd_flags(self, port: int) -> list[str]:
        peer = free_port()
        return [
            "--name=throwaway",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{port}",
            f"--advertise-client-urls=http://127.0.0.1:{port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=throwaway=http://127.0.0.1:{peer}",
            # A cluster that lives for one test run: nothing to keep across a power cut.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _write_kubeconfig(self, ca_certificate: Path, admin: tuple[Path, Path]) -> None:
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "throwaway",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(ca_certificate),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(admin[1]), "client-key": str(admin[0])},
                }
            ],
            "contexts": [
                {"name": name, "context": {"cluster": "throwaway", "user": "admin"}}
                for name in self.contexts
            ],
            "current-context": "admin",
        }
        self.kubeconfig.write_text(yaml.safe_dump(document, sort_keys=False))

    def _kwok_stages(self) -> Path:
        """kwok's own stage sets and this project's, in one file (kwok refuses to start without)."""
        source = self.bin.parent / "kwok-stages"
        documents = [
            path.read_text()
            for stage_set in MODULE_STAGES
            for path in sorted((source / stage_set).glob("*.yaml"))
            if yaml.safe_load(path.read_text()).get("kind") == "Stage"
        ]
        documents.append((MANIFESTS / "stages.yaml").read_text())
        stages = self.dir / "kwok-stages.yaml"
        stages.write_text("\n---\n".join(documents))
        return stages

    def _spawn(self, name: str, *flags: str) -> None:
        log = (self.dir / "logs" / f"{name}.log").open("wb")
        self._processes[name] = subprocess.Popen(
            [str(self.bin / name), *flags],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env={**os.environ, "HOME": str(self.dir)},  # kwok reads ~/.kwok
            start_new_session=True,  # its own group: `stop` ends the group
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - and the kernel, if the test dies
        )
        log.close()

    def _wait_until_ready(self, ca: Path, admin: tuple[Path, Path], deadline: float) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(admin[1]), str(admin[0]))
        with httpx.Client(verify=context, timeout=2.0) as client:
            while True:
                self._check_running()
                try:
                    if client.get(f"{self.server}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"kube-apiserver not ready within {START_TIMEOUT:.0f} s; see "
                        f"{self.dir / 'logs'}"
                    )
                time.sleep(0.2)

    def _wait_for(self, name: str, condition: str, deadline: float) -> None:
        left = max(deadline - time.monotonic(), 1.0)
        try:
            self.kubectl("wait", f"--for=condition={condition}", name, f"--timeout={left:.0f}s")
        except ControlPlaneError:
            self._check_running()  # a process that died says more than the timeout
            raise

    def _wait_for_openapi(self, path: str, deadline: float) -> None:
        while path not in json.loads(self.kubectl("get", "--raw", "/openapi/v3")).get("paths", {}):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"the API server never published /openapi/v3/{path}")
            time.sleep(0.2)

    def _check_running(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited {process.returncode}; see {self.dir / 'logs' / name}.log"
                )

    # using ------------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of `kind` (`-A` without a namespace)."""
        where = ["-n", namespace] if namespace else ["-A"]
        listed: dict[str, Any] = yaml.safe_load(self.kubectl("get", kind, *where, "-o", "json"))
        items: list[dict[str, Any]] = listed["items"]
        return items

    def namespaces(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.objects("namespaces")}

    # stopping ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ends every process (the last started first) and fails if any outlives this."""
        for process in reversed(self._processes.values()):
            end_group(process, signal.SIGTERM, STOP_TIMEOUT)
        left = processes_mentioning(str(self.dir))
        if left:
            raise ControlPlaneError(f"processes outlived the control plane: {left}")

"""How vLLM's /metrics is scraped: a PodMonitor for the Prometheus operator."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import VllmEndpoint

METRICS_PATH = "/metrics"
"""vLLM serves Prometheus metrics on its API port, without the API key (only /v1 asks for it)."""
SCRAPE_INTERVAL = "15s"


def pod_monitor(
    name: str,
    endpoint: VllmEndpoint,
    namespace: pulumi.Input[str],
    labels: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource | None:
    """Every replica scraped directly (not through the Service, which picks one): the queue
    depth and KV-cache use are per replica."""
    if endpoint.metrics is None or not endpoint.metrics.pod_monitor:
        return None
    return k8s.apiextensions.CustomResource(
        f"{name}-metrics",
        api_version="monitoring.coreos.com/v1",
        kind="PodMonitor",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="vllm",
            namespace=namespace,
            labels={**labels, **endpoint.metrics.pod_monitor_labels},
        ),
        spec={
            "selector": {"matchLabels": labels},
            "podMetricsEndpoints": [
                {"port": "http", "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
            ],
        },
        opts=opts,
    )

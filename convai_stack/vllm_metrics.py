"""How vLLM's /metrics is scraped: a PodMonitor for the Prometheus operator."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .vllm_scope import EndpointScope

METRICS_PATH = "/metrics"
"""vLLM serves Prometheus metrics on its API port, without the API key (only /v1 asks for it)."""
SCRAPE_INTERVAL = "15s"


def pod_monitor(
    scope: EndpointScope, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource | None:
    """Every replica scraped directly (not through the Service, which picks one): the queue
    depth and KV-cache use are per replica."""
    metrics = scope.endpoint.metrics
    if metrics is None or not metrics.pod_monitor:
        return None
    return scope.custom_resource(
        "metrics",
        api_version="monitoring.coreos.com/v1",
        kind="PodMonitor",
        metadata=scope.metadata("vllm", labels={**scope.labels, **metrics.pod_monitor_labels}),
        spec={
            "selector": {"matchLabels": scope.labels},
            "podMetricsEndpoints": [
                {"port": "http", "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
            ],
        },
        opts=opts,
    )

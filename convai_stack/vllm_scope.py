"""What every Kubernetes object of one vLLM endpoint is built from, and the parts they share:
metadata in the endpoint's namespace with its labels, the selector of its pods, custom resources
named after the component, and options with timeouts of their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from convai_stack.stack_config import VllmEndpoint


@dataclass(frozen=True)
class EndpointScope:
    name: str
    """The component's name: every resource's Pulumi name starts with it."""
    endpoint: VllmEndpoint
    namespace: pulumi.Input[str]
    labels: dict[str, str]
    """The endpoint's labels: on every object, and what selects its pods."""

    def metadata(
        self,
        name: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> k8s.meta.v1.ObjectMetaArgs:
        """An object in the endpoint's namespace, with the endpoint's labels unless given others;
        unnamed, Pulumi names it after its resource."""
        return k8s.meta.v1.ObjectMetaArgs(
            name=name,
            namespace=self.namespace,
            labels=self.labels if labels is None else labels,
            annotations=annotations,
        )

    def pod_selector(self) -> k8s.meta.v1.LabelSelectorArgs:
        """The endpoint's pods, and no other."""
        return k8s.meta.v1.LabelSelectorArgs(match_labels=self.labels)

    def custom_resource(
        self,
        suffix: str,
        *,
        api_version: str,
        kind: str,
        metadata: k8s.meta.v1.ObjectMetaArgs,
        spec: dict[str, Any],
        opts: pulumi.ResourceOptions,
    ) -> k8s.apiextensions.CustomResource:
        """A resource of a CRD (cert-manager, Gateway API, KEDA, Prometheus operator, Cilium),
        named `<component>-<suffix>`."""
        return k8s.apiextensions.CustomResource(
            f"{self.name}-{suffix}",
            api_version=api_version,
            kind=kind,
            metadata=metadata,
            spec=spec,
            opts=opts,
        )


def with_timeouts(
    opts: pulumi.ResourceOptions, timeouts: pulumi.CustomTimeouts
) -> pulumi.ResourceOptions:
    """`opts`, awaited for as long as `timeouts` allow."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(custom_timeouts=timeouts))

"""GET /models, with the key and without: the endpoint is reachable, takes the key, serves the
model, and refuses whoever comes without the key."""

from __future__ import annotations

import httpx

from convai_provider.api.retry import is_retryable_status
from convai_provider.preflight.failures import not_the_api_root, status_failure
from convai_provider.preflight.probe import Probe
from convai_provider.preflight.replies import listed_names, served_models
from convai_provider.preflight.report import EndpointCheck


def models_with_key(probe: Probe, model_name: str) -> list[EndpointCheck]:
    """reachable, key accepted and model listed, up to the first that fails."""
    url = f"{probe.base_url}/models"
    response = probe.get(url, with_key=True)
    if isinstance(response, EndpointCheck):
        return [response]
    if is_retryable_status(response.status_code):
        return [status_failure("reachable", response, url, probe.now())]
    reachable = EndpointCheck("reachable", True, f"{url} answered HTTP {response.status_code}")
    if response.status_code == 404:
        return [reachable, not_the_api_root(response, url, probe.base_url)]
    if response.status_code != 200:
        key_given = bool(probe.api_key)
        failure = status_failure("key accepted", response, url, probe.now(), key_given=key_given)
        return [reachable, failure]
    return [reachable, *_listed(response, url, model_name)]


def _listed(response: httpx.Response, url: str, model_name: str) -> list[EndpointCheck]:
    served = served_models(response)
    if served is None:
        return [
            EndpointCheck(
                "key accepted",
                False,
                f"{url} did not answer with an OpenAI model list; is base_url the API root "
                "(ending in /v1)?",
                final=True,
            )
        ]
    accepted = EndpointCheck("key accepted", True, "GET /models succeeded with the key")
    if model_name not in served:
        return [
            accepted,
            EndpointCheck(
                "model listed",
                False,
                f"model '{model_name}' is not served there; it serves {listed_names(served)}. "
                "Set model_name to one of those (vLLM: --served-model-name)",
                final=bool(served),
            ),
        ]
    return [accepted, EndpointCheck("model listed", True, f"'{model_name}' is served")]


def models_without_key(probe: Probe) -> list[EndpointCheck]:
    """key enforced: passed with a warning when the endpoint serves anyone."""
    url = f"{probe.base_url}/models"
    response = probe.get(url, with_key=False)
    if isinstance(response, EndpointCheck):
        return [response]
    if response.status_code in (401, 403):
        return [EndpointCheck("key enforced", True, "requests without the key are refused")]
    if is_retryable_status(response.status_code):  # says nothing about keys: ask again
        return [status_failure("key enforced", response, url, probe.now())]
    return [
        EndpointCheck(
            "key enforced",
            True,
            "the endpoint does not check keys: anyone who finds it can use it "
            "(vLLM: start it with --api-key)",
            warning=True,
        )
    ]

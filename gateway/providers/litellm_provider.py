"""Every provider litellm supports (Anthropic, Bedrock, Vertex, Ollama, ...), through litellm.

litellm is imported lazily (it takes ~2.6 s and ~165 MB), in the background at start when the
config needs it, so it is never on the path to the first answer of an OpenAI-style upstream.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from gateway.core.errors import (
    CONTENT_POLICY_VIOLATION,
    CONTEXT_WINDOW_EXCEEDED,
    BadRequest,
    GatewayError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.providers.base import DONE_EVENT, Deployment, Reply, Stream, Usage, sse_event
from gateway.providers.errors import parse_retry_after, where

_import_lock = threading.Lock()


def import_litellm() -> Any:
    with _import_lock:
        # Prices come from the map bundled with the package, never from the network.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        return litellm


def warm_in_background() -> threading.Thread:
    thread = threading.Thread(target=import_litellm, name="litellm-import", daemon=True)
    thread.start()
    return thread


@contextmanager
def translate_litellm_errors(deployment: Deployment) -> Iterator[None]:
    """Like translate_http_errors: the caller's message names the alias, and litellm's text
    (which names the provider, the upstream model and sometimes the account) goes to
    `detail`, except for a 4xx about the caller's own request."""
    litellm = import_litellm()
    exc_mod = litellm.exceptions
    model = repr(deployment.alias)
    try:
        yield
    except GatewayError:
        raise
    except exc_mod.RateLimitError as exc:
        retry_after = None
        response = getattr(exc, "response", None)
        if response is not None:
            retry_after = parse_retry_after(response.headers)
        raise RateLimited(
            f"the upstream of model {model} is rate limiting the gateway; retry later",
            retry_after=retry_after,
            detail=_detail(deployment, exc),
        ) from None
    except exc_mod.Timeout as exc:
        raise UpstreamTimeout(
            f"the upstream of model {model} did not answer in time", detail=_detail(deployment, exc)
        ) from None
    except exc_mod.APIConnectionError as exc:
        raise UpstreamUnavailable(
            f"cannot connect to the upstream of model {model}", detail=_detail(deployment, exc)
        ) from None
    except exc_mod.ServiceUnavailableError as exc:
        raise UpstreamUnavailable(
            f"the upstream of model {model} is unavailable; retry later",
            detail=_detail(deployment, exc),
        ) from None
    except (exc_mod.AuthenticationError, exc_mod.PermissionDeniedError) as exc:
        raise UpstreamError(
            f"the gateway's credentials for model {model} were rejected; tell the operator",
            detail=_detail(deployment, exc),
            upstream_status=_status(exc, 401),
        ) from None
    except (exc_mod.BadRequestError, exc_mod.UnprocessableEntityError) as exc:
        code = None
        if isinstance(exc, exc_mod.ContextWindowExceededError):
            code = CONTEXT_WINDOW_EXCEEDED
        elif isinstance(exc, exc_mod.ContentPolicyViolationError):
            code = CONTENT_POLICY_VIOLATION
        raise BadRequest(
            f"upstream refused the request for model {model}: {exc.message}",
            code=code,
            detail=_detail(deployment, exc),
            upstream_status=_status(exc, 400),
        ) from None
    except exc_mod.NotFoundError as exc:
        raise UpstreamError(
            f"the upstream of model {model} does not serve it; tell the operator",
            detail=_detail(deployment, exc),
            upstream_status=404,
        ) from None
    except exc_mod.APIError as exc:
        raise UpstreamError(
            f"the upstream of model {model} failed",
            detail=_detail(deployment, exc),
            upstream_status=_status(exc, 500),
        ) from None
    except Exception as exc:  # litellm raises plain exceptions for some provider failures
        raise UpstreamError(
            f"the call to the upstream of model {model} failed", detail=_detail(deployment, exc)
        ) from None


def _status(exc: Exception, default: int) -> int:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else default


def _detail(deployment: Deployment, exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return f"{where(deployment)}: {type(exc).__name__}: {text}"


def _call_kwargs(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    # The deployment's request parameters and LiteLLM's provider settings (credentials,
    # region_name, drop_params), never its router or pricing keys (core/deployment_params).
    kwargs = {**deployment.litellm_kwargs, **body}
    kwargs["model"] = deployment.model
    # The router owns retries and fallbacks, a deployment's max_retries included (litellm maps
    # num_retries onto the provider client's max_retries).
    kwargs["num_retries"] = 0
    kwargs["timeout"] = deployment.timeout
    if deployment.api_base:
        kwargs["api_base"] = deployment.api_base
    if deployment.api_key:
        kwargs["api_key"] = deployment.api_key
    if deployment.api_version:  # litellm's azure/ (and azure_ai/, ...) put it in the URL
        kwargs["api_version"] = deployment.api_version
    if deployment.organization:
        kwargs["organization"] = deployment.organization
    if deployment.extra_headers:
        kwargs["extra_headers"] = deployment.extra_headers
    return kwargs


def _dump(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = response.model_dump(exclude_none=True)
    return data


class LiteLLMProvider:
    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        with translate_litellm_errors(deployment):
            litellm = import_litellm()
            response = await litellm.acompletion(**_call_kwargs(deployment, body))
            data = _dump(response)
        return Reply(
            orjson.dumps(data), Usage.from_openai(data.get("usage")), time.perf_counter() - started
        )

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        with translate_litellm_errors(deployment):
            litellm = import_litellm()
            response = await litellm.aembedding(**_call_kwargs(deployment, body))
            data = _dump(response)
        return Reply(
            orjson.dumps(data), Usage.from_openai(data.get("usage")), time.perf_counter() - started
        )

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream:
        started = time.perf_counter()
        with translate_litellm_errors(deployment):
            litellm = import_litellm()
            kwargs = _call_kwargs(deployment, {**body, "stream": True})
            response = await litellm.acompletion(**kwargs)
            chunks = self._events(response, deployment)
            first = await anext(chunks, None)
        if first is None:
            raise UpstreamError(
                f"the upstream stream of model {deployment.alias!r} was empty",
                detail=f"{where(deployment)}: empty stream",
            )
        return Stream(first, chunks, started)

    async def _events(self, response: Any, deployment: Deployment) -> AsyncIterator[list[bytes]]:
        with translate_litellm_errors(deployment):
            async for chunk in response:
                yield [sse_event(_dump(chunk))]
        yield [DONE_EVENT]

    async def aclose(self) -> None:
        return None

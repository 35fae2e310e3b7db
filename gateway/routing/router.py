"""Aliases to deployments: choice, retries with backoff, cooldowns and fallbacks.

Only gateway errors are seen here; providers have already translated library failures.
A stream counts as successful once its first event arrived, so a stream may move to another
deployment or a fallback only before the client has received a byte.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, cast

from gateway.core.config import RouterSettings
from gateway.core.errors import (
    DeploymentBusy,
    GatewayError,
    ModelNotConfigured,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
    UpstreamUnavailable,
    is_retryable,
)
from gateway.providers import Deployment, Provider, Providers
from gateway.providers.catalogue import ModelCatalogue
from gateway.routing.names import ModelNames

T = TypeVar("T")
P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
# What one attempt does with the deployment chosen: send the request. It takes the call's own
# payload, so callers pass module-level functions rather than closures.
Send = Callable[[Provider, Deployment, P], Awaitable[T]]


class AttemptHook(Protocol[P_contra]):
    """What the caller does around each attempt: admit it against the deployment's own
    limits (a refusal counts as the attempt's failure), note it for the record and its span."""

    async def attempting(self, deployment: Deployment, payload: P_contra) -> None: ...

    def attempted(
        self,
        deployment: Deployment,
        payload: P_contra,
        started: float,
        seconds: float,
        error: GatewayError | None,
    ) -> None: ...


log = logging.getLogger("gateway.routing")
LOG_EVERY_S = 1.0


class DeploymentState:
    """Health and load of one deployment, in this process."""

    __slots__ = (
        "consecutive_fails",
        "cooldown_until",
        "deployment",
        "in_flight",
        "latency",
        "logged_at",
        "unlogged",
    )

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.consecutive_fails = 0
        self.cooldown_until = 0.0
        self.in_flight = 0
        self.latency = 0.0  # exponentially weighted seconds per successful call
        self.logged_at = float("-inf")
        self.unlogged = 0  # failures since the last one logged

    def healthy(self, now: float) -> bool:
        return now >= self.cooldown_until

    def succeeded(self, seconds: float) -> None:
        self.consecutive_fails = 0
        self.latency = seconds if self.latency == 0.0 else 0.8 * self.latency + 0.2 * seconds

    def failed(self, error: GatewayError, settings: RouterSettings, now: float) -> None:
        """An upstream fault (see is_retryable); a caller's bad request is never one."""
        self._log(error, now)
        self.consecutive_fails += 1
        if self.consecutive_fails >= settings.allowed_fails:
            self.cooldown_until = max(self.cooldown_until, now + settings.cooldown_time)
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        if retry_after is not None and retry_after > settings.max_retry_wait:
            self.cooldown_until = max(self.cooldown_until, now + retry_after)

    def _log(self, error: GatewayError, now: float) -> None:
        # At most one line per deployment per LOG_EVERY_S: an outage must not flood the log.
        if now - self.logged_at < LOG_EVERY_S:
            self.unlogged += 1
            return
        more = f" ({self.unlogged} more failures since the last report)" if self.unlogged else ""
        log.warning("model %r failed: %s%s", self.deployment.alias, _detail(error), more)
        self.logged_at, self.unlogged = now, 0


@dataclass(slots=True)
class Routed(Generic[T]):
    value: T
    deployment: Deployment
    attempts: int
    upstream_seconds: float  # in provider calls and backoff waits, across all attempts


class Router:
    def __init__(
        self,
        deployments: list[Deployment],
        settings: RouterSettings,
        providers: Providers,
        catalogue: ModelCatalogue | None = None,
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.names = ModelNames(
            deployments,
            DeploymentState,
            settings.group_aliases(),
            settings.hidden_aliases(),
            catalogue,
        )
        # Models none of whose deployments loaded (core/load_report.py): name -> why.
        self.unavailable = dict(unavailable or {})
        self.fallbacks: dict[str, list[str]] = {}
        for rule in settings.fallbacks:
            for source, targets in rule.items():
                self.fallbacks.setdefault(source, []).extend(targets)
        self._random = random.Random()

    def aliases(self) -> list[str]:
        """The model groups of the config's model_names (wildcards and aliases aside)."""
        return list(self.names.exact)

    def listed(self) -> list[str]:
        """The names GET /v1/models shows (see ModelNames.listed)."""
        return self.names.listed()

    def states(self, name: str) -> list[DeploymentState]:
        states = self.names.find(name)
        if states is None:
            if name in self.unavailable:
                raise ModelNotConfigured(self.unavailable[name], param="model")
            raise ModelNotFound(
                f"The model {name!r} does not exist or you do not have access to it. "
                f"GET /v1/models lists the models this gateway serves.",
                param="model",
            )
        return states

    def deployments(self, name: str) -> list[Deployment]:
        return [state.deployment for state in self.states(name)]

    def permits(self, name: str, allowed: Callable[[str], bool]) -> bool:
        """A key allowed a model group may use its aliases too, as in LiteLLM."""
        return allowed(name) or ((target := self.names.target(name)) != name and allowed(target))

    def chain(
        self,
        name: str,
        allowed: Callable[[str], bool] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[str]:
        """The model group a requested name reaches and the fallbacks `allowed` lets the
        caller use (and the request's tags leave a deployment in), in the order they are
        tried. The caller must be allowed the name itself: that is checked apart, so the
        caller learns why it was refused."""
        group = self.names.target(name)
        states = self.states(group)
        if self.settings.enable_tag_filtering and not self._tagged(states, tags):
            raise _no_tagged_deployment(name, tags)
        # Fallbacks are looked up by the requested name first, then by the group it routes to.
        fallbacks = self.fallbacks.get(name) or self.fallbacks.get(group)
        if not fallbacks:
            return [group]
        chain = [group]
        tagging = self.settings.enable_tag_filtering
        for fallback in fallbacks:
            if allowed is not None and not self.permits(fallback, allowed):
                continue
            served = self.names.find(fallback)
            if served is None or (tagging and not self._tagged(served, tags)):
                continue  # a pattern named literally serves no call; nor do other tags
            chain.append(self.names.target(fallback))
        return chain

    def _tagged(
        self, states: list[DeploymentState], tags: Sequence[str] | None
    ) -> list[DeploymentState]:
        """LiteLLM's tag filter: a tagged request goes to the deployments carrying one of its
        tags (all of them when tag_filtering_match_any is false), else to those tagged
        `default`; an untagged request to those tagged `default` if any, else to all."""
        defaults = [s for s in states if "default" in s.deployment.tags]
        if not tags:
            return defaults or states
        wanted = set(tags)
        if self.settings.tag_filtering_match_any:
            matched = [s for s in states if not wanted.isdisjoint(s.deployment.tags)]
        else:
            matched = [s for s in states if wanted.issubset(s.deployment.tags)]
        return matched or defaults

    async def call(
        self,
        chain: list[str],
        send: Send[P, T],
        payload: P,
        hook: AttemptHook[P] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Routed[T]:
        """Tries the model groups of `chain` (from chain()) in order until one answers; each
        attempt is `send(provider, deployment, payload)` between the hook's two calls. With
        tag filtering on, only the deployments the request's tags select are tried."""
        attempts = 0
        spent = 0.0
        error: GatewayError | None = None
        for name in chain:
            states = self.states(name)
            if self.settings.enable_tag_filtering:
                states = self._tagged(states, tags)
                if not states:  # chain() left out such groups: only if its table forgot one
                    raise _no_tagged_deployment(name, tags)
            try:
                return await self._call_alias(states, send, payload, hook, attempts, spent)
            except _AliasFailed as failure:
                attempts, spent, error = failure.attempts, failure.spent, failure.error
                if not is_retryable(error):
                    raise error from None
        assert error is not None
        raise error

    def _pick(self, states: list[DeploymentState], tried: set[int]) -> DeploymentState | None:
        now = time.monotonic()
        healthy = [s for s in states if s.healthy(now)]
        fresh = [s for s in healthy if id(s) not in tried] or healthy
        if not fresh:
            return None
        if len(fresh) == 1:
            return fresh[0]
        strategy = self.settings.routing_strategy
        if strategy == "least-busy":
            return min(fresh, key=lambda s: s.in_flight)
        if strategy == "latency-based-routing":
            # Untried deployments have latency 0 and so get explored first.
            return min(fresh, key=lambda s: s.latency)
        weights = [s.deployment.weight for s in fresh]
        if not any(weights):
            weights = [1.0] * len(fresh)
        return self._random.choices(fresh, weights=weights)[0]

    def _wait(self, attempt: int, error: GatewayError) -> float | None:
        """Seconds to wait before the next attempt, or None to stop trying this alias."""
        settings = self.settings
        if isinstance(error, RateLimited) and error.retry_after is not None:
            if error.retry_after > settings.max_retry_wait:
                return None
            return max(settings.retry_after, float(error.retry_after))
        backoff = min(0.05 * (2.0**attempt), settings.max_retry_wait)
        return max(settings.retry_after, backoff * (0.5 + self._random.random() / 2))

    async def _call_alias(
        self,
        states: list[DeploymentState],
        send: Send[P, T],
        payload: P,
        hook: AttemptHook[P] | None,
        attempts: int,
        spent: float,
    ) -> Routed[T]:
        settings = self.settings
        tried: set[int] = set()
        last_error: GatewayError | None = None
        for attempt in range(settings.num_retries + 1):
            state = self._pick(states, tried)
            if state is None:
                alias = states[0].deployment.alias
                last_error = last_error or UpstreamUnavailable(
                    f"every deployment of {alias!r} is cooling down after repeated failures; "
                    f"retry in a few seconds"
                )
                break
            tried.add(id(state))
            tries = await self._on_deployment(state, send, payload, hook)
            attempts += tries.calls
            spent += tries.seconds
            if tries.failure is None:
                return Routed(cast(T, tries.value), state.deployment, attempts, spent)
            failure = last_error = tries.failure
            if not is_retryable(failure) or attempt == settings.num_retries:
                break
            now = time.monotonic()
            if any(id(s) not in tried and s.healthy(now) for s in states):
                wait: float | None = 0.0  # another deployment is ready: switch, don't wait
            else:
                wait = self._wait(attempt, failure)
            if wait is None:
                break
            await asyncio.sleep(wait)
            spent += wait
        assert last_error is not None
        raise _AliasFailed(last_error, attempts, spent)

    async def _on_deployment(
        self,
        state: DeploymentState,
        send: Send[P, T],
        payload: P,
        hook: AttemptHook[P] | None,
    ) -> _Tries[T]:
        """One attempt of the router: the call, then up to the deployment's max_retries more
        on it (LiteLLM gives max_retries to the provider's SDK client, which retries in the
        same place) unless the failure is one to move on from or the deployment cooled down."""
        deployment = state.deployment
        tries: _Tries[T] = _Tries()
        while True:
            tries.calls += 1
            failure: GatewayError | None = None
            started = time.perf_counter()
            state.in_flight += 1
            try:
                if hook is not None:
                    await hook.attempting(deployment, payload)
                provider = self.providers.for_deployment(deployment)
                tries.value = await send(provider, deployment, payload)
            except GatewayError as exc:
                failure = exc
            finally:
                state.in_flight -= 1
            elapsed = time.perf_counter() - started
            tries.seconds += elapsed
            if hook is not None:
                hook.attempted(deployment, payload, started, elapsed, failure)
            tries.failure = failure
            if failure is None:
                state.succeeded(elapsed)
                return tries
            if not is_retryable(failure):
                # The caller's own request was refused: the deployment is fine, and another
                # would refuse it too.
                log.debug("model %r refused a request: %s", deployment.alias, _detail(failure))
                return tries
            if isinstance(failure, DeploymentBusy):  # our own limiter said no: healthy
                return tries
            state.failed(failure, self.settings, time.monotonic())
            if tries.calls > deployment.max_retries or not state.healthy(time.monotonic()):
                return tries
            wait = self._wait(tries.calls - 1, failure)
            if wait is None:
                return tries
            await asyncio.sleep(wait)
            tries.seconds += wait


@dataclass(slots=True)
class _Tries(Generic[T]):
    """Calls made to one deployment in one attempt, and how the last one went."""

    value: T | None = None
    failure: GatewayError | None = None
    calls: int = 0
    seconds: float = 0.0  # in calls and waits between them


def _no_tagged_deployment(name: str, tags: Sequence[str] | None) -> PermissionDenied:
    # LiteLLM's words (a 401 there), so scripts that look for them still find them.
    return PermissionDenied(
        f"Not allowed to access model due to tags configuration: no deployment of {name!r} "
        f"carries the request's tags {list(tags or [])} and none is tagged 'default'.",
        param="tags",
        code="no_deployment_for_tags",
    )


def _detail(error: GatewayError) -> str:
    return error.detail or error.message


class _AliasFailed(Exception):
    def __init__(self, error: GatewayError, attempts: int, spent: float) -> None:
        self.error, self.attempts, self.spent = error, attempts, spent

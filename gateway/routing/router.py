"""Requested model names to deployments: choice, retries with backoff, cooldowns and fallbacks.

Only gateway errors are seen here; providers have already translated library failures.
A stream counts as successful once its first event arrived, so a stream may move to another
deployment or a fallback only before the client has received a byte; one that fails later
counts toward its deployment's cooldown (`stream_failed`), and mid-stream recovery
(calls/streaming.py) routes its continuation through `call` again, without it (`avoid`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, cast

from gateway.core.config import RouterSettings
from gateway.core.errors import (
    CONTEXT_WINDOW_EXCEEDED,
    BadRequest,
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
from gateway.routing.failures import FailurePolicy
from gateway.routing.fallbacks import FallbackPlan
from gateway.routing.health import DeploymentState, detail
from gateway.routing.names import ModelNames
from gateway.routing.strategies import COUNTS_USAGE, choose, current_minute

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
        prices: dict[str, float] | None = None,
        context_windows: dict[str, int] | None = None,
    ) -> None:
        """`catalogue` (the price map's models) serves wildcard names; `unavailable` names
        the models none of whose deployments loaded, and why (core/load_report.py); `prices`
        (per deployment id: its input and output price per token together) serve cost-based
        routing; `context_windows` (the most prompt tokens each takes) serve
        enable_pre_call_checks."""
        self.settings = settings
        self.providers = providers
        self.policy = FailurePolicy(settings)
        self._prices = prices or {}
        self._windows = context_windows if settings.enable_pre_call_checks else None
        self.names = ModelNames(
            deployments,
            self._state,
            settings.group_aliases(),
            settings.hidden_aliases(),
            catalogue,
        )
        self.unavailable = dict(unavailable or {})
        exact, group_aliases = self.names.exact, self.names.group_aliases
        # Deployment ids a fallback names (one deployment each), unless a model name or
        # model_group_alias is spelled the same (that wins); they win over wildcards.
        named = {
            name
            for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
            for rule in getattr(settings, key)
            for targets in rule.values()
            for name in targets
        } | set(settings.default_fallbacks)
        self._by_id: dict[str, DeploymentState] = {}
        self._ids: dict[str, list[DeploymentState]] = {}
        self._alias_of: dict[str, str] = {}
        for states in exact.values():
            for state in states:
                deployment_id = state.deployment.id
                self._by_id[deployment_id] = state
                if (
                    deployment_id in named
                    and deployment_id not in exact
                    and deployment_id not in group_aliases
                ):
                    self._ids[deployment_id] = [state]
                    self._alias_of[deployment_id] = state.deployment.alias
        self.fallbacks = FallbackPlan(settings, [*exact, *group_aliases, *self._ids], group_aliases)
        # Per call, the pipeline estimates the prompt's tokens only when these need them.
        self.counts_usage = settings.routing_strategy in COUNTS_USAGE
        self.needs_prompt_tokens = self.counts_usage or self._windows is not None
        self._random = random.Random()

    def _state(self, deployment: Deployment) -> DeploymentState:
        # A wildcard's copies keep their deployment's id, so its price and window too.
        windows = self._windows
        return DeploymentState(
            deployment,
            self._prices.get(deployment.id, math.inf),
            windows.get(deployment.id) if windows else None,
        )

    def aliases(self) -> list[str]:
        """The model groups of the config's model_names (wildcards and aliases aside)."""
        return list(self.names.exact)

    def listed(self) -> list[str]:
        """The names GET /v1/models shows (see ModelNames.listed)."""
        return self.names.listed()

    def deployments_by_target(self) -> dict[str, list[Deployment]]:
        """The deployments each model name, model_group_alias, or deployment id a fallback
        names, may be served by (a wildcard's are known per name: see `deployments`)."""
        targets = {**self.names.exact, **self._ids}
        for alias, group in self.names.group_aliases.items():
            if group in self.names.exact:
                targets[alias] = self.names.exact[group]
        return {name: [s.deployment for s in states] for name, states in targets.items()}

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

    def _serving(self, name: str) -> list[DeploymentState] | None:
        """What a name of a chain reaches: a deployment id a fallback names, else what a
        request for the name reaches (None: nothing)."""
        if self._ids:
            states = self._ids.get(name)
            if states is not None:
                return states
        return self.names.find(name)

    def permits(self, name: str, allowed: Callable[[str], bool]) -> bool:
        """A key allowed a model group may use its aliases too, as in LiteLLM."""
        return allowed(name) or ((target := self.names.target(name)) != name and allowed(target))

    def chain(
        self,
        name: str,
        allowed: Callable[[str], bool] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[str]:
        """The requested name, then every fallback a call to it may reach that `allowed` lets
        the caller use (for a deployment id, its model name is what is checked) and whose
        deployments serve calls (a model left out, or none carrying the request's tags when
        tag filtering is on, is skipped). The caller must be allowed the name itself: that
        is checked apart, so the caller learns why it was refused."""
        states = self.states(self.names.target(name))
        tagging = self.settings.enable_tag_filtering
        if tagging and not self._tagged(states, tags):
            raise _no_tagged_deployment(name, tags)
        fallbacks = self.fallbacks.reachable_from(name)
        if not fallbacks:
            return [name]
        chain = [name]
        for fallback in fallbacks:
            if allowed is not None and not self.permits(
                self._alias_of.get(fallback, fallback), allowed
            ):
                continue
            served = self._serving(fallback)
            if served is None or (tagging and not self._tagged(served, tags)):
                continue  # a pattern named literally serves no call; nor do other tags
            chain.append(fallback)
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

    def _state_of(self, deployment: Deployment) -> DeploymentState | None:
        state = self._by_id.get(deployment.id)
        if state is None or state.deployment is not deployment:
            # A wildcard's copy: its state is among those its name resolved to.
            resolved = self.names.find(deployment.alias) or []
            state = next((s for s in resolved if s.deployment is deployment), None)
        return state

    def used(self, deployment: Deployment, tokens: int) -> None:
        """An answer's tokens, for usage-based routing (counted in this minute)."""
        state = self._state_of(deployment)
        if state is not None:
            state.usage(current_minute())
            state.minute_tokens += tokens

    def stream_failed(self, deployment: Deployment, error: GatewayError) -> None:
        """A stream the deployment cut or let stall after its first event: a failure of the
        deployment like any other (toward allowed_fails and its cooldown)."""
        state = self._state_of(deployment)
        if state is not None and is_retryable(error):
            state.failed(error, self.settings, self.policy, time.monotonic())

    async def call(
        self,
        chain: list[str],
        send: Send[P, T],
        payload: P,
        hook: AttemptHook[P] | None = None,
        prompt_tokens: int = 0,
        tags: Sequence[str] | None = None,
        avoid: Deployment | None = None,
    ) -> Routed[T]:
        """Tries chain[0], then its fallbacks among `chain` (from chain()), until one
        answers; each attempt is `send(provider, deployment, payload)` between the hook's
        two calls. `prompt_tokens`, an estimate, serves enable_pre_call_checks and
        usage-based routing (see needs_prompt_tokens); with tag filtering on, only the
        deployments the request's `tags` select are tried. `avoid` (a deployment whose
        stream just broke) is never tried: its alias's other deployments are, then its
        fallbacks."""
        name = chain[0]
        plan = self.fallbacks.regular.get(name)
        attempts, spent, fallbacks = 0, 0.0, 0
        tried: set[str] | None = None  # built on the first fallback: most calls need none
        while True:
            try:
                return await self._call_alias(
                    name, send, payload, hook, attempts, spent, prompt_tokens, tags, avoid
                )
            except _AliasFailed as failure:
                attempts, spent, error = failure.attempts, failure.spent, failure.error
            after = self.fallbacks.after(name, error, plan)
            if after is None:
                raise error from None
            plan = after
            if tried is None:
                tried, permitted = {name}, set(chain)
            following = next((n for n in plan if n not in tried and n in permitted), None)
            if following is None or fallbacks >= self.fallbacks.max_fallbacks:
                raise error from None
            log.debug("model %r failed (%s): falling back to %r", name, detail(error), following)
            name = following
            tried.add(name)
            fallbacks += 1

    def _pick(
        self, states: list[DeploymentState], tried: set[int], prompt_tokens: int
    ) -> DeploymentState | None:
        now = time.monotonic()
        healthy = [s for s in states if s.healthy(now)]
        fresh = [s for s in healthy if id(s) not in tried] or healthy
        if not fresh:
            return None
        if len(fresh) == 1:
            return fresh[0]
        return choose(self.settings.routing_strategy, fresh, self._random, prompt_tokens)

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
        name: str,
        send: Send[P, T],
        payload: P,
        hook: AttemptHook[P] | None,
        attempts: int,
        spent: float,
        prompt_tokens: int,
        tags: Sequence[str] | None,
        avoid: Deployment | None = None,
    ) -> Routed[T]:
        states = self._fitting(name, prompt_tokens, tags)
        if isinstance(states, GatewayError):
            raise _AliasFailed(states, attempts, spent)
        if avoid is not None:
            states = [s for s in states if s.deployment is not avoid]
            if not states:  # on to the fallbacks
                error = UpstreamUnavailable(
                    f"{self._alias_of.get(name, name)!r} has no other deployment to continue on"
                )
                raise _AliasFailed(error, attempts, spent)
        tried: set[int] = set()
        last_error: GatewayError | None = None
        attempt = 0
        while True:
            state = self._pick(states, tried, prompt_tokens)
            if state is None:
                last_error = last_error or UpstreamUnavailable(
                    f"every deployment of {self._alias_of.get(name, name)!r} is cooling down "
                    f"after repeated failures; retry in a few seconds"
                )
                break
            tried.add(id(state))
            tries = await self._on_deployment(state, send, payload, hook)
            attempts += tries.calls
            spent += tries.seconds
            if tries.failure is None:
                return Routed(cast(T, tries.value), state.deployment, attempts, spent)
            failure = last_error = tries.failure
            if attempt >= self.policy.retries(failure):
                break
            attempt += 1
            now = time.monotonic()
            if any(id(s) not in tried and s.healthy(now) for s in states):
                wait: float | None = 0.0  # another deployment is ready: switch, don't wait
            else:
                wait = self._wait(attempt - 1, failure)
            if wait is None:
                break
            await asyncio.sleep(wait)
            spent += wait
        assert last_error is not None
        raise _AliasFailed(last_error, attempts, spent)

    def _fitting(
        self, name: str, prompt_tokens: int, tags: Sequence[str] | None
    ) -> list[DeploymentState] | GatewayError:
        """The deployments of `name` the request's tags select (with tag filtering on) whose
        context window takes the prompt (all of them unless enable_pre_call_checks found
        some too small). None fitting is a context window error, as LiteLLM's pre-call check
        raises, so context_window_fallbacks apply."""
        states = self._serving(name)
        if states is None:
            states = self.states(name)  # raises why nothing serves it
        if self.settings.enable_tag_filtering:
            states = self._tagged(states, tags)
            if not states:  # chain() left out such names: only if its table forgot one
                raise _no_tagged_deployment(name, tags)
        if not prompt_tokens or all(s.context_window is None for s in states):
            return states
        fitting = [s for s in states if (s.context_window or prompt_tokens) >= prompt_tokens]
        if fitting:
            return fitting
        largest = max(s.context_window or 0 for s in states)
        return BadRequest(
            f"the prompt (about {prompt_tokens} tokens) is longer than model "
            f"{self._alias_of.get(name, name)!r} takes ({largest} tokens)",
            param="messages",
            code=CONTEXT_WINDOW_EXCEEDED,
        )

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
            if self.counts_usage:
                state.usage(current_minute())
                state.minute_requests += 1
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
                log.debug("model %r refused a request: %s", deployment.alias, detail(failure))
                return tries
            if isinstance(failure, DeploymentBusy):  # our own limiter said no: healthy
                return tries
            state.failed(failure, self.settings, self.policy, time.monotonic())
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


class _AliasFailed(Exception):
    def __init__(self, error: GatewayError, attempts: int, spent: float) -> None:
        self.error, self.attempts, self.spent = error, attempts, spent

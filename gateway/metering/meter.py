"""Admission before a call (budgets, then rate limits) and settlement after it.

Budgets reserve the worst-case cost before the call and settle to the real cost after, so
concurrent calls can never spend past a budget by more than the estimate's error. Estimates
are deliberately pessimistic: prompt tokens from the request's byte size plus a fixed count
per image, audio or file part, completion tokens from n x max_tokens (or a configured
default), prices from the dearest deployment that may serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import DeploymentBusy, RateLimited
from gateway.identity.auth import Caller
from gateway.metering.budgets import Budget, BudgetHold
from gateway.metering.limits import Limit, RateState, Reservation
from gateway.metering.prices import PriceTable
from gateway.metering.stores import MeterStore
from gateway.providers import Deployment, Usage


@dataclass(slots=True)
class Admission:
    tokens: int
    hold: BudgetHold | None = None
    reservation: Reservation | None = None
    state: RateState | None = None
    settled: bool = False
    deployment_reservations: list[Reservation] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return self.state.headers() if self.state is not None else {}


# Prompt tokens reserved per non-text content part (image_url, input_audio, file) beyond its
# bytes: a URL or a file id costs a few bytes but the model sees the whole image or file.
# Above the largest single image of OpenAI's high-detail tiling (1,445) and Anthropic's
# (~1,600); long audio and many-page files may still exceed it, and are settled to the real
# count after the call like everything else.
PART_TOKENS_RESERVED = 2_500
# Prompt tokens billed per non-text part when the upstream reported no usage (a client left
# before it): a 1024 x 1024 high-detail image's 765, neither the best nor the worst case.
PART_TOKENS_BILLED = 765
# Tokens of a message's framing (role, separators), as OpenAI counts them.
MESSAGE_TOKENS = 4


def estimate_tokens(
    body: dict[str, Any], body_bytes: int, default_max_tokens: int
) -> tuple[int, int]:
    """Worst-case (prompt, completion) tokens of a request."""
    # JSON bytes / 2 over-counts real tokens for every tokenizer we know of (English runs
    # about 4 bytes per token); over-reserving only delays the last calls before a limit.
    prompt = body_bytes // 2 + 16
    messages = body.get("messages")
    if messages:
        prompt += PART_TOKENS_RESERVED * _non_text_parts(messages)
    limit = 0  # the larger of the two limits: upstreams differ in which one they honour
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if type(value) is int and value > limit:
            limit = value
    if not limit:
        limit = default_max_tokens
    n = body.get("n")
    # Every choice may run to the limit: the upstream bills n x max_tokens.
    if type(n) is int and n > 1:
        limit *= n
    return prompt, limit


def prompt_tokens_sent(body: dict[str, Any]) -> int:
    """An estimate of the prompt tokens of a request the upstream accepted, for when it
    reported none: text characters / 4, like completions are counted from what streamed."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 1
    chars = 0
    parts = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    chars += len(text)
                else:
                    parts += 1
        calls = message.get("tool_calls")
        if calls:
            chars += len(str(calls))
    return max(1, chars // 4 + MESSAGE_TOKENS * len(messages) + PART_TOKENS_BILLED * parts)


def _non_text_parts(messages: Any) -> int:
    count = 0
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text":
                        count += 1
    return count


def _busy(deployment: Deployment, refused: RateLimited) -> DeploymentBusy:
    # The limiter names the deployment's id; the caller learns the alias, the log the rest.
    model = repr(deployment.alias)
    if refused.retry_after is None:  # waiting will never help
        message = f"the request is too large for model {model}'s token rate; lower max_tokens"
    else:
        message = f"model {model} is at its configured rate limit; retry later"
    return DeploymentBusy(
        message, retry_after=refused.retry_after, headers=refused.headers, detail=refused.message
    )


class Meter:
    def __init__(
        self,
        store: MeterStore,
        prices: PriceTable,
        alias_deployments: dict[str, list[Deployment]],
        default_max_tokens: int,
    ) -> None:
        self.store = store
        self.prices = prices
        self.default_max_tokens = default_max_tokens
        self._worst_price: dict[str, tuple[float, float]] = {}
        for alias, deployments in alias_deployments.items():
            found = [p for p in map(prices.price, deployments) if p is not None]
            # A cache-read or reasoning rate may exceed the plain one: reserve at the dearest.
            self._worst_price[alias] = (
                max((max(p.input, p.cached_input or 0.0) for p in found), default=0.0),
                max((max(p.output, p.reasoning_output or 0.0) for p in found), default=0.0),
            )

    @staticmethod
    def _limits(caller: Caller) -> list[Limit]:
        limits = []
        key, team = caller.key, caller.team
        if key is not None and (key.rpm_limit or key.tpm_limit):
            limits.append(Limit(f"key:{key.id}", key.rpm_limit, key.tpm_limit))
        if team is not None and (team.rpm_limit or team.tpm_limit):
            limits.append(Limit(f"team:{team.id}", team.rpm_limit, team.tpm_limit))
        return limits

    @staticmethod
    def _budgets(caller: Caller) -> list[Budget]:
        budgets = []
        key, team = caller.key, caller.team
        if key is not None and key.max_budget is not None:
            budgets.append(Budget(f"key:{key.id}", key.max_budget, key.budget_duration))
        if team is not None and team.max_budget is not None:
            budgets.append(Budget(f"team:{team.id}", team.max_budget, team.budget_duration))
        return budgets

    def worst_cost(self, aliases: list[str], prompt_tokens: int, completion_tokens: int) -> float:
        prices = [self._worst_price.get(a, (0.0, 0.0)) for a in aliases]
        input_price = max((p[0] for p in prices), default=0.0)
        output_price = max((p[1] for p in prices), default=0.0)
        return prompt_tokens * input_price + completion_tokens * output_price

    async def admit(
        self,
        caller: Caller,
        aliases: list[str],
        body: dict[str, Any],
        body_bytes: int,
        completion: bool = True,
    ) -> Admission:
        default = self.default_max_tokens if completion else 0
        prompt, completion_tokens = estimate_tokens(body, body_bytes, default)
        tokens = prompt + completion_tokens
        budgets = self._budgets(caller)
        cost = self.worst_cost(aliases, prompt, completion_tokens) if budgets else 0.0
        admitted = await self.store.admit(budgets, cost, self._limits(caller), tokens)
        return Admission(tokens, admitted.hold, admitted.reservation, admitted.state)

    async def admit_deployment(self, admission: Admission, deployment: Deployment) -> None:
        if deployment.rpm is None and deployment.tpm is None:
            return
        limit = Limit(f"deployment:{deployment.id}", deployment.rpm, deployment.tpm)
        try:
            admitted = await self.store.admit([], 0.0, [limit], admission.tokens)
        except RateLimited as refused:
            raise _busy(deployment, refused) from None
        if admitted.reservation is not None:
            admission.deployment_reservations.append(admitted.reservation)

    async def settle(self, admission: Admission, usage: Usage | None, cost: float) -> None:
        """Settles in process now; the Redis store sends settles after the answer, batched."""
        if admission.settled:
            return
        admission.settled = True
        tokens = (usage.prompt_tokens + usage.completion_tokens) if usage else 0
        reservations = admission.deployment_reservations
        if admission.reservation is not None:
            reservations = [admission.reservation, *reservations]
        await self.store.settle(admission.hold, cost, reservations, tokens)

    async def spent(self, scope: str, max_budget: float, duration: str | None) -> float:
        """What the budget `scope` (`key:<id>`, `team:<id>`) has spent in its current period."""
        return await self.store.spent(Budget(scope, max_budget, duration))

    async def aclose(self) -> None:
        """Sends what is still queued, then closes the store."""
        await self.store.aclose()

"""Admission before a call (budgets, then rate limits) and settlement after it.

Budgets reserve the worst-case cost before the call and settle to the real cost after, so
concurrent calls can never spend past a budget by more than the estimate's error. Estimates
are deliberately pessimistic: prompt tokens from the request's byte size plus a fixed count
per image, audio or file part, completion tokens from n x max_tokens (or a configured
default), prices from the dearest deployment that may serve.

A chat call whose worst case does not fit what a budget has left is not refused outright
(gateway.cap_max_tokens_to_budget, on by default): its completion limit is lowered until the
reservation fits, and the pipeline sends the lower limit upstream, so the call still cannot
spend more than was left. The room comes from the refusal itself, so a call that fits costs
nothing more, and one that does not costs one more admission.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import DeploymentBusy, RateLimited
from gateway.identity.auth import Caller
from gateway.metering.budgets import NANO, Budget, BudgetExceeded, BudgetHold, format_usd, to_nano
from gateway.metering.limits import Limit, RateState, Reservation
from gateway.metering.prices import Price, PriceTable
from gateway.metering.stores import MeterStore
from gateway.providers import Deployment, Usage

# The fewest completion tokens (per choice) a call is capped to: a shorter answer is of no
# use to anyone, so below it the call is refused instead.
MIN_CAPPED_TOKENS = 16
# Admissions one call may make while being capped: each refusal reports the room left and
# the next attempt fits it; a key's budget, then its team's, then a race with another call.
CAP_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class TokenCap:
    """A call's completion limit (per choice), lowered to what its budget had left."""

    tokens: int
    original: int  # the caller's max_tokens or max_completion_tokens, or the default


@dataclass(slots=True)
class Admission:
    tokens: int
    hold: BudgetHold | None = None
    reservation: Reservation | None = None
    state: RateState | None = None
    settled: bool = False
    deployment_reservations: list[Reservation] = field(default_factory=list)
    cap: TokenCap | None = None

    def headers(self) -> dict[str, str]:
        headers = self.state.headers() if self.state is not None else {}
        if self.cap is not None:
            headers["x-gateway-max-tokens-capped"] = str(self.cap.tokens)
            headers["x-gateway-max-tokens-original"] = str(self.cap.original)
        return headers


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
    limit, n = completion_limit(body, default_max_tokens)
    return prompt_estimate(body, body_bytes), limit * n


def prompt_estimate(body: dict[str, Any], body_bytes: int) -> int:
    """Worst-case prompt tokens of a request."""
    # JSON bytes / 2 over-counts real tokens for every tokenizer we know of (English runs
    # about 4 bytes per token); over-reserving only delays the last calls before a limit.
    prompt = body_bytes // 2 + 16
    messages = body.get("messages")
    if messages:
        prompt += PART_TOKENS_RESERVED * _non_text_parts(messages)
    return prompt


def completion_limit(body: dict[str, Any], default_max_tokens: int) -> tuple[int, int]:
    """The completion tokens each choice may run to (the request's limit, else the default),
    and how many choices: the upstream bills n x max_tokens."""
    limit = 0  # the larger of the two limits: upstreams differ in which one they honour
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if type(value) is int and value > limit:
            limit = value
    if not limit:
        limit = default_max_tokens
    n = body.get("n")
    return limit, n if type(n) is int and n > 1 else 1


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


def _fits(room_nano: int, prompt: int, n: int, prices: tuple[float, float]) -> int:
    """The most completion tokens per choice whose worst case fits in room_nano, as the
    ledger rounds it; -1 when not even the prompt fits (or completion is free, so the refusal
    was the prompt's)."""
    input_price, output_price = prices
    left = room_nano / NANO - prompt * input_price
    if output_price <= 0 or left < 0:
        return -1
    fit = int(left / (n * output_price))
    while fit >= 0 and to_nano(prompt * input_price + fit * n * output_price) > room_nano:
        fit -= 1
    return fit


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
        *,
        cap_max_tokens_to_budget: bool = True,
        resolve: Callable[[str], list[Deployment]] | None = None,
    ) -> None:
        self.store = store
        self.prices = prices
        self.default_max_tokens = default_max_tokens
        self.caps = cap_max_tokens_to_budget
        # The deployments of a name that is not a configured alias (one a wildcard serves),
        # priced per call: the router keeps what it resolved, and pricing is a few lookups.
        self._resolve = resolve
        self._worst_price: dict[str, tuple[float, float]] = {}
        # Prices with long-context tiers, whose dearest rate depends on the prompt's size.
        self._tiered: dict[str, list[Price]] = {}
        self._row_price: dict[str, float] = {}  # classic models: the dearest per prediction
        for alias, deployments in alias_deployments.items():
            self._worst_price[alias] = self._dearest(deployments, 0)
            found = [p for p in map(prices.price, deployments) if p is not None]
            self._row_price[alias] = max((p.prediction for p in found), default=0.0)
            tiered = [p for p in found if p.tiers]
            if tiered:
                self._tiered[alias] = tiered

    def _dearest(self, deployments: list[Deployment], prompt_tokens: int) -> tuple[float, float]:
        # A cache or reasoning rate may exceed the plain one: reserve at the dearest.
        # (A price per second cannot be reserved: its calls settle what they cost.)
        found = [
            p.dearest(prompt_tokens) for p in map(self.prices.price, deployments) if p is not None
        ]
        return max((p[0] for p in found), default=0.0), max((p[1] for p in found), default=0.0)

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

    def _worst_of(self, alias: str, prompt_tokens: int) -> tuple[float, float]:
        worst = self._worst_price.get(alias)
        if worst is not None:
            return worst
        if self._resolve is None:
            return 0.0, 0.0
        return self._dearest(self._resolve(alias), prompt_tokens)

    def _price_of(self, aliases: list[str], prompt_tokens: int) -> tuple[float, float]:
        """The dearest (input, output) price per token any of the aliases may be served at,
        for a prompt of at most `prompt_tokens` (the estimate is an upper bound, so a tier it
        does not reach cannot apply)."""
        prices = [self._worst_of(a, prompt_tokens) for a in aliases]
        for alias in aliases:
            prices += [p.dearest(prompt_tokens) for p in self._tiered.get(alias, ())]
        return max((p[0] for p in prices), default=0.0), max((p[1] for p in prices), default=0.0)

    def worst_cost(self, aliases: list[str], prompt_tokens: int, completion_tokens: int) -> float:
        input_price, output_price = self._price_of(aliases, prompt_tokens)
        return prompt_tokens * input_price + completion_tokens * output_price

    async def admit(
        self,
        caller: Caller,
        aliases: list[str],
        body: dict[str, Any],
        body_bytes: int,
        completion: bool = True,
    ) -> Admission:
        prompt = prompt_estimate(body, body_bytes)
        limit, n = completion_limit(body, self.default_max_tokens) if completion else (0, 1)
        budgets, limits = self._budgets(caller), self._limits(caller)
        if not budgets:
            tokens = prompt + limit * n
            admitted = await self.store.admit(budgets, 0.0, limits, tokens)
            return Admission(tokens, admitted.hold, admitted.reservation, admitted.state)
        prices = self._price_of(aliases, prompt)
        each = limit  # the completion tokens per choice reserved for
        for attempt in range(CAP_ATTEMPTS):
            cost = prompt * prices[0] + each * n * prices[1]
            try:
                admitted = await self.store.admit(budgets, cost, limits, prompt + each * n)
            except BudgetExceeded as refused:
                fit = _fits(refused.room_nano, prompt, n, prices)
                capping = self.caps and completion and attempt + 1 < CAP_ATTEMPTS
                if not capping or fit < MIN_CAPPED_TOKENS or fit >= each:
                    raise self._refusal(refused, body, prompt, limit, n, prices, fit) from None
                each = fit
                continue
            cap = TokenCap(each, limit) if each < limit else None
            tokens = prompt + each * n
            return Admission(tokens, admitted.hold, admitted.reservation, admitted.state, cap=cap)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def admit_predictions(self, caller: Caller, aliases: list[str], rows: int) -> Admission:
        """A classic model's call, priced per row predicted: its cost is known before it
        runs, at the dearest deployment that may serve it. No tokens: TPM limits ignore it."""
        budgets, limits = self._budgets(caller), self._limits(caller)
        price = max((self._row_price.get(a, 0.0) for a in aliases), default=0.0)
        cost = rows * price if budgets else 0.0
        try:
            admitted = await self.store.admit(budgets, cost, limits, 0)
        except BudgetExceeded as refused:
            needs = (
                f"needs up to {format_usd(cost)} ({rows} predictions at "
                f"{format_usd(price * 1000)} per 1,000)"
            )
            raise refused.explained(to_nano(cost), needs) from None
        return Admission(0, admitted.hold, admitted.reservation, admitted.state)

    def _refusal(
        self,
        refused: BudgetExceeded,
        body: dict[str, Any],
        prompt: int,
        limit: int,
        n: int,
        prices: tuple[float, float],
        fit: int,
    ) -> BudgetExceeded:
        """The ledger's refusal, saying in tokens what the call needed and what would fit."""
        if not limit:  # embeddings: no completion
            amount = to_nano(prompt * prices[0])
            needs = f"needs up to {format_usd(amount / NANO)} (its input, estimated at up to "
            return refused.explained(amount, f"{needs}{prompt} tokens)")
        # With capping on, the least the call could have been admitted with.
        least = min(limit, MIN_CAPPED_TOKENS) if self.caps else limit
        amount = to_nano(prompt * prices[0] + least * n * prices[1])
        bound = "at least" if least < limit else "up to"
        completion = f"{n} x {least}" if n > 1 else str(least)
        needs = (
            f"needs {bound} {format_usd(amount / NANO)} (its prompt, estimated at up to "
            f"{prompt} tokens, and {completion} completion tokens)"
        )
        advice = ""
        if 1 <= fit < limit:
            name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            advice = f"Set {name} to {fit} or less to fit."
        return refused.explained(amount, needs, advice)

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

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        """Sends what is still queued, then closes the store."""
        await self.store.aclose()

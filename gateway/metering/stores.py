"""Where budgets and rate limits are kept: the interface Meter uses, and the in-process store.

A store admits a call (budget holds and rate-limit counts, all or nothing) and settles it.
The in-process store composes a ledger and a limiter; the Redis store (redis_meter.py) does
both in one script per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.metering.budgets import Budget, BudgetHold, BudgetLedger
from gateway.metering.limits import Limit, RateLimiter, RateState, Reservation


@dataclass(slots=True)
class Admitted:
    hold: BudgetHold | None
    reservation: Reservation | None
    state: RateState | None


class MeterStore(Protocol):
    @property
    def ledger(self) -> BudgetLedger: ...

    @property
    def limiter(self) -> RateLimiter: ...

    async def admit(
        self, budgets: Sequence[Budget], cost_usd: float, limits: Sequence[Limit], tokens: int
    ) -> Admitted: ...

    async def settle(
        self,
        hold: BudgetHold | None,
        cost_usd: float,
        reservations: Sequence[Reservation],
        tokens: int,
    ) -> None: ...

    async def spent(self, budget: Budget) -> float: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalMeterStore:
    """A ledger and a limiter used one after the other: the budget hold is released when the
    limits then refuse. Exact for in-process stores, where nothing runs in between."""

    def __init__(self, ledger: BudgetLedger, limiter: RateLimiter) -> None:
        self.ledger = ledger
        self.limiter = limiter

    async def admit(
        self, budgets: Sequence[Budget], cost_usd: float, limits: Sequence[Limit], tokens: int
    ) -> Admitted:
        hold = await self.ledger.reserve(budgets, cost_usd) if budgets else None
        if not limits:
            return Admitted(hold, None, None)
        try:
            reservation, state = await self.limiter.acquire(limits, tokens)
        except BaseException:
            if hold is not None:
                await self.ledger.settle(hold, 0.0)
            raise
        return Admitted(hold, reservation, state)

    async def settle(
        self,
        hold: BudgetHold | None,
        cost_usd: float,
        reservations: Sequence[Reservation],
        tokens: int,
    ) -> None:
        if hold is not None:
            await self.ledger.settle(hold, cost_usd)
        for reservation in reservations:
            await self.limiter.settle(reservation, tokens)

    async def spent(self, budget: Budget) -> float:
        return await self.ledger.spent(budget)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.limiter.aclose()
        await self.ledger.aclose()

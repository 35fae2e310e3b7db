"""Leases: a replica admits most calls from room it reserved in Redis a moment before.

Admitting a call in Redis costs a round trip before the call can go upstream. A lease takes,
in that same one-script round trip, room for the next calls of the same key as well:
requests and tokens counted in its rate-limit windows, money held in its budgets. The calls
that follow are admitted in memory. Nothing is admitted past a limit: whatever a lease lends
was counted in Redis first, atomically, for every replica to see. The cost is that room lent
to one replica is idle for the others until its lease ends, so a lease takes at most
1/SHARE of the room left, and near a limit (room for fewer than 2 * SHARE calls) every call
is admitted alone, exactly as without leases.

A lease ends when its calls are used up, after LEASE_S, at a budget period's end, when the
key's limits change, and at the end of the second its room was counted in: the sliding
window (limits.py) counts a call from its own second on, so a call admitted in a later second
from room counted earlier would leave the window too soon. Once its calls in flight have
settled, one queued settle books what they spent and gives back to that second what the
lease did not use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.metering.budgets import Budget, BudgetHold
from gateway.metering.limits import Limit, RateState, Reservation, rate_state

# A lease lives this long at most: the money it holds is booked as spend when it ends, so
# this is also how stale another replica's view of a budget's spend can be.
LEASE_S = 1.0
# A lease takes at most this fraction (1/SHARE) of the room a counter has left.
SHARE = 8
# A key's first lease covers this many calls; each lease used up doubles the next.
FIRST_CALLS = 4

Signature = tuple[tuple[Budget, ...], tuple[Limit, ...]]


@dataclass(eq=False, slots=True)
class Ticket:
    """One call admitted from a lease; settling it returns its unused estimate to the lease."""

    lease: Lease
    cost_nano: int
    tokens: int
    done: bool = False


@dataclass(slots=True)
class LeaseHold(BudgetHold):
    ticket: Ticket | None = None


@dataclass(slots=True)
class LeaseReservation(Reservation):
    ticket: Ticket | None = None


@dataclass(eq=False, slots=True)
class Lease:
    signature: Signature
    calls: int
    # Counted in Redis when granted: the money held (None without budgets) and the requests
    # and tokens counted (None without limits). What the calls do not use goes back.
    hold: BudgetHold | None
    reservation: Reservation | None
    limits: tuple[Limit, ...]
    # Each scope's (requests, tokens, oldest second) in Redis after the grant.
    counts: list[tuple[int, int, int]]
    valid_until: float  # the clock time its second or a budget's period ends
    checks_tokens: bool  # whether any of its limits counts tokens (TPM)
    calls_left: int = 0
    nano_left: int = 0
    tokens_left: int = 0
    spent_nano: int = 0
    inflight: int = 0
    retired: bool = False

    @classmethod
    def granted(
        cls,
        signature: Signature,
        calls: int,
        cost_nano: int,
        tokens: int,
        hold: BudgetHold | None,
        reservation: Reservation | None,
        counts: list[tuple[int, int, int]],
    ) -> Lease:
        ends = [period.end for period in hold.periods] if hold is not None else []
        until = min((end.timestamp() for end in ends if isinstance(end, datetime)), default=1e300)
        if reservation is not None:
            until = min(until, reservation.second + 1)
        return cls(
            signature,
            calls,
            hold,
            reservation,
            signature[1],
            counts,
            until,
            any(limit.tpm is not None for limit in signature[1]),
            calls_left=calls,
            nano_left=calls * cost_nano,
            tokens_left=calls * tokens,
        )

    def fits(self, now: float, cost_nano: int, tokens: int) -> bool:
        return (
            self.calls_left > 0
            and now < self.valid_until
            and self.nano_left >= cost_nano
            and (self.tokens_left >= tokens or not self.checks_tokens)
        )

    def take(self, cost_nano: int, tokens: int) -> Ticket:
        self.calls_left -= 1
        self.nano_left -= cost_nano
        self.tokens_left -= tokens
        self.inflight += 1
        return Ticket(self, cost_nano, tokens)

    def release(self, ticket: Ticket, actual_nano: int, actual_tokens: int) -> None:
        """A call settled: its spend is booked and what its estimate over-counted is free."""
        self.inflight -= 1
        if self.hold is not None:
            self.spent_nano += actual_nano
            self.nano_left += ticket.cost_nano - actual_nano
        self.tokens_left += ticket.tokens - actual_tokens

    def state(self, now: float) -> RateState | None:
        """The rate-limit headers as this replica knows them: Redis's counts at the grant,
        less what the lease still holds unused."""
        if self.reservation is None:
            return None
        unused_calls, unused_tokens = self.calls_left, self.tokens_left
        counts = [(r - unused_calls, t - unused_tokens, s) for r, t, s in self.counts]
        return rate_state(self.limits, counts, now)

    def next_calls(self, current: int, most: int) -> int:
        """How many calls the key's next lease should ask for."""
        if self.calls_left == 0:
            return min(most, current * 2)
        if self.calls_left * 2 > self.calls:
            return max(1, current // 2)
        return current

"""routing_strategy: which of an alias's healthy deployments takes the next attempt."""

from __future__ import annotations

import random
import time

from gateway.routing.health import DeploymentState

USAGE_BASED = frozenset({"usage-based-routing", "usage-based-routing-v2"})
# Strategies that need each deployment's usage in the current minute.
COUNTS_USAGE = USAGE_BASED | {"cost-based-routing"}


def current_minute() -> int:
    return int(time.time() // 60)


def choose(
    strategy: str, candidates: list[DeploymentState], rng: random.Random, prompt_tokens: int
) -> DeploymentState:
    """One of `candidates` (at least two, all healthy)."""
    if strategy == "least-busy":
        return min(candidates, key=lambda s: s.in_flight)
    if strategy == "latency-based-routing":
        # Untried deployments have latency 0 and so get explored first.
        return min(candidates, key=lambda s: s.latency)
    if strategy in COUNTS_USAGE:
        # As LiteLLM: skip deployments this minute's usage leaves no room under their rpm or
        # tpm; if none has room, the deployment's own limit refuses the call and says when.
        minute = current_minute()
        roomy = [s for s in candidates if s.has_room(minute, prompt_tokens)] or candidates
        if strategy == "cost-based-routing":
            return min(roomy, key=lambda s: s.price)  # the first listed among equals
        least = min(s.usage(minute)[0] for s in roomy)
        return rng.choice([s for s in roomy if s.minute_tokens == least])
    weights = [s.deployment.weight for s in candidates]
    if not any(weights):
        weights = [1.0] * len(candidates)
    return rng.choices(candidates, weights=weights)[0]

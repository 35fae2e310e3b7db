"""User-written checks for the `python` assertion tests: the shapes promptfoo users return."""

from __future__ import annotations

import asyncio
from typing import Any


def mentions_city(output: str, context: dict[str, Any]) -> bool:
    return str(context["vars"]["city"]).lower() in output.lower()


async def short_enough(output: str, context: dict[str, Any]) -> bool:
    await asyncio.sleep(0)
    return len(output) <= int(context["vars"].get("max_chars", 20))


def word_share(output: str, context: dict[str, Any]) -> float:
    """The share of the expected words present: a score the threshold decides on."""
    wanted = str(context["vars"]["words"]).split()
    return sum(word in output for word in wanted) / len(wanted)


def graded(output: str, context: dict[str, Any]) -> dict[str, Any]:
    polite = "please" in output.lower()
    return {"pass": polite, "score": 0.9 if polite else 0.1, "reason": f"polite={polite}"}


def score_only(output: str, context: dict[str, Any]) -> dict[str, Any]:
    return {"score": 0.3}


def echo_context(output: str, context: dict[str, Any]) -> dict[str, Any]:
    seen = {key: context[key] for key in ("latency_ms", "cost_usd")}
    return {"pass": True, "reason": repr(seen)}


def explodes(output: str, context: dict[str, Any]) -> bool:
    raise RuntimeError("lookup table missing")


def out_of_range(output: str, context: dict[str, Any]) -> float:
    return 7.0


def wrong_type(output: str, context: dict[str, Any]) -> str:
    return "yes"

"""Python checks the parity suite names with file://checks.py:FUNCTION (promptfoo's form)."""

from __future__ import annotations

from typing import Any


def get_assert(output: str, context: dict[str, Any]) -> bool:
    """The default function promptfoo calls for file://checks.py."""
    return output.endswith(".")


def polite(output: str, context: dict[str, Any]) -> dict[str, Any]:
    found = "please" in output.lower()
    return {"pass": found, "score": 0.9 if found else 0.1, "reason": f"please: {found}"}


def share_of_words(output: str, context: dict[str, Any]) -> float:
    wanted = str(context["vars"]["words"]).split()
    return sum(word in output for word in wanted) / len(wanted)


def expected_city(output: str, context: dict[str, Any]) -> str:
    """A function giving another assertion its expected value (promptfoo's get_assert)."""
    return str(context["vars"]["city"]).upper()

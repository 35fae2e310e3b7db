"""Promotion gates: a label moves only to versions with a passing run of a required suite."""

from __future__ import annotations

from typing import Any

from gateway.evals.gates import refusal, suite_name
from gateway.evals.store import EvalStore
from gateway.prompts.store import normalize_target, target_versions


def missing_evals(evals: EvalStore, suite: str, name: str, target: dict[str, Any]) -> str | None:
    """Why the promotion is refused, or None when every target version passed the suite."""
    suite = suite_name(suite)
    for version in target_versions(normalize_target(target)):
        tested = f"{name}@{version}"
        if not evals.has_passing_run(suite, tested):
            return refusal(suite, tested, f"prompt:{tested}")
    return None

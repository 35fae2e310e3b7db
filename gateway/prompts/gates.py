"""Promotion gates: a label moves only to versions with a passing run of a required suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.evals.store import EvalStore
from gateway.prompts.store import normalize_target, target_versions


def missing_evals(evals: EvalStore, suite: str, name: str, target: dict[str, Any]) -> str | None:
    """Why the promotion is refused, or None when every target version passed the suite."""
    suite_name = Path(suite).stem  # "evals/support-triage.yaml" and "support-triage" alike
    for version in target_versions(normalize_target(target)):
        if not evals.has_passing_run(suite_name, f"{name}@{version}"):
            return (
                f"refusing to promote {name}@{version}: suite {suite_name!r} has no passing "
                f"run of it (run: gateway eval run evals/{suite_name}.yaml "
                f"--target prompt:{name}@{version})"
            )
    return None

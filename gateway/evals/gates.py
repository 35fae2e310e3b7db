"""Promotion gates, shared by prompts and registry models: a label moves only to a version
with a passing run of the required suite."""

from __future__ import annotations

from pathlib import Path


def suite_name(suite: str) -> str:
    """`evals/support-triage.yaml` and `support-triage` name the same suite."""
    return Path(suite).stem


def refusal(suite: str, tested: str, target: str) -> str:
    """Why a promotion is refused, and the command that would allow it."""
    return (
        f"refusing to promote {tested}: suite {suite!r} has no passing run of it "
        f"(run: gateway eval run evals/{suite}.yaml --target {target})"
    )

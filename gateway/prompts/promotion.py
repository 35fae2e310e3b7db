"""Moving a prompt's label, gated like a registry model's (gateway.evals.gates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.evals.gates import PromotedVersion, require_passing_runs
from gateway.evals.store import EvalStore
from gateway.prompts.models import PromptLabelMoved
from gateway.prompts.store import PromptStore, normalize_target, target_versions


def promote(
    store: PromptStore,
    evals: EvalStore,
    name: str,
    label: str,
    target: Mapping[str, Any],
    *,
    actor: str,
    reason: str | None = None,
    require_eval: str | None = None,
) -> PromptLabelMoved:
    """Points `label` at a version or a weighted split; with `require_eval`, only when every
    version in it has a passing run of that suite."""
    if require_eval:
        versions = target_versions(normalize_target(target))
        require_passing_runs(
            evals, require_eval, [PromotedVersion.prompt(name, v) for v in versions]
        )
    return store.promote(name, label, target, actor, reason)

"""Moving a label: the approver is required, and `require_eval` gates the move on a passing
eval run of the version (the gate prompts use too: gateway.evals.gates)."""

from __future__ import annotations

from gateway.core.errors import BadRequest
from gateway.core.model_refs import ModelRef, check_label
from gateway.evals.gates import PromotedVersion, require_passing_runs
from gateway.evals.store import EvalStore
from gateway.registry.models import RegistryLabelSet
from gateway.registry.store import RegistryStore


def promote(
    store: RegistryStore,
    evals: EvalStore,
    ref: ModelRef,
    label: str,
    *,
    approver: str,
    actor: str,
    require_eval: str | None = None,
    reason: str | None = None,
) -> RegistryLabelSet:
    """Points `label` at the version `ref` names now (a label ref is resolved once, here)."""
    check_label(label)
    if not approver.strip():
        raise BadRequest("a promotion needs an approver (who signed it off)", param="approver")
    number = store.resolve(ref)
    suite = run_id = None
    if require_eval:
        passed = require_passing_runs(
            evals, require_eval, [PromotedVersion.registry(ref.name, number)]
        )
        suite, run_id = passed.suite, passed.runs[0]
    return store.set_label(
        ref.name,
        label,
        number,
        approver=approver.strip(),
        actor=actor,
        reason=reason,
        eval_suite=suite,
        eval_run=run_id,
    )

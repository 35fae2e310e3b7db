"""Moving a label: the approver is required, and `require_eval` gates the move on a passing
eval run of the version (the same gate prompts use)."""

from __future__ import annotations

from typing import Any

from gateway.core.errors import BadRequest, PermissionDenied
from gateway.core.model_refs import ModelRef, check_label, eval_version
from gateway.evals.gates import refusal, suite_name
from gateway.evals.store import EvalStore
from gateway.registry.store import RegistryStore

EVAL_REQUIRED = "eval_required"


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
) -> dict[str, Any]:
    """Points `label` at the version `ref` names now (a label ref is resolved once, here)."""
    check_label(label)
    if not approver.strip():
        raise BadRequest("a promotion needs an approver (who signed it off)", param="approver")
    number = store.resolve(ref)
    suite = run_id = None
    if require_eval:
        suite = suite_name(require_eval)
        tested = eval_version(ref.name, number)
        run_id = evals.passing_run(suite, tested)
        if run_id is None:
            raise PermissionDenied(refusal(suite, tested, tested), code=EVAL_REQUIRED)
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

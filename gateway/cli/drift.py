"""`gateway drift report`: compare subjects with their references now, as the background job
does (storing the reports, sending the webhook call when a verdict changes). Exit 0 when no
subject drifted, 1 when one did, 2 on bad input or when nothing could be compared."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import engine, fail, settings

if TYPE_CHECKING:
    from gateway.drift.monitor import DriftMonitor, Evaluation
    from gateway.drift.subjects import Subject

drift_app = typer.Typer(
    no_args_is_help=True, help="Drift monitoring: compare sampled traffic with its references."
)
STATES = {"drift": "DRIFT", "no_drift": "ok", "not_enough_data": "not enough data"}


def _monitor() -> DriftMonitor:
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError
    from gateway.drift.service import Drift
    from gateway.providers.local import SentenceEmbedder
    from gateway.registry.store import RegistryStore

    embedder = SentenceEmbedder()  # loads the model only when a text needs embedding

    def embed(texts: list[str]) -> Any:
        return embedder.embed(texts)[0]

    from gateway.drift.webhook import resolve_secret

    try:
        section = load_config(settings().config).drift
        resolve_secret(section.webhook.secret if section.webhook else None)  # before any work
    except ConfigError as exc:
        fail(str(exc))
    db = engine()
    return Drift.build(section, db, RegistryStore(db), embed).monitor


def _evaluate(monitor: DriftMonitor, subject: Subject) -> Evaluation:
    """One subject compared; a failure (the embedding model cannot load, say) is one line."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return monitor.evaluate(subject)
    except SQLAlchemyError:
        raise
    except Exception as exc:
        fail(f"comparing {subject.id} failed: {type(exc).__name__}: {exc}")


def _line(evaluation: Evaluation) -> str:
    report = evaluation.report
    state = STATES[report.state]
    if report.state == "not_enough_data":
        return f"{report.subject}  {state}: {report.note}"
    drifted = ", ".join(report.drifted_columns) or "-"
    return (
        f"{report.subject}  {state}  {len(report.drifted_columns)}/{report.columns_judged} "
        f"columns drifted (share {report.drift_share:.2f}): {drifted}; reference "
        f"{report.reference.rows if report.reference else 0} rows, current {report.current.rows}"
    )


@drift_app.command("report")
def report(
    model: Annotated[
        str | None, typer.Option(help="A model alias or classic model (its prompts included).")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="A prompt, NAME or NAME@VERSION.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The reports as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write an HTML report (charts, offline) here.")
    ] = None,
) -> None:
    """Compare every sampled subject (or those asked for) with its reference now."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.cli.progress import item_progress
    from gateway.drift import subjects
    from gateway.drift.html_report import render
    from gateway.drift.models import DriftReportList

    if model is not None and prompt is not None:
        fail("give --model or --prompt, not both")
    problem = subjects.prompt_filter_problem(prompt) if prompt is not None else None
    if problem is not None:
        fail(f"--prompt {problem}")
    if html is not None and not html.parent.is_dir():
        fail(f"--html {html}: no such folder {html.parent}")
    monitor = _monitor()
    try:
        chosen = [s for s in monitor.subjects() if subjects.selected(s, model, prompt)]
        if not chosen and (model or prompt):
            asked = f"--model {model}" if model else f"--prompt {prompt}"
            fail(
                f"no sampled subject matches {asked} (drift samples the calls whose "
                f"drift.subjects entry sets a sample_rate)"
            )
        evaluations = []
        with item_progress("drift report", len(chosen), "subject") as advance:
            for subject in chosen:
                evaluations.append(_evaluate(monitor, subject))
                advance(subject.id, STATES[evaluations[-1].report.state])
    except SQLAlchemyError as exc:
        fail(f"cannot read the database: {exc.__class__.__name__}: {exc.args[0]}")
    if html is not None:
        try:
            html.write_text(render(evaluations), encoding="utf-8")
        except OSError as exc:
            fail(f"--html {html}: {exc.strerror or exc}")
    if as_json:
        sys.stdout.write(DriftReportList(data=[e.report for e in evaluations]).model_dump_json())
        sys.stdout.write("\n")
    elif not evaluations:
        typer.echo("no subject has drift samples yet (set drift.subjects[].sample_rate)")
    for evaluation in evaluations if not as_json else []:
        typer.echo(_line(evaluation))
    raise typer.Exit(1 if any(e.report.state == "drift" for e in evaluations) else 0)

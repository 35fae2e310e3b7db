"""`gateway eval run SUITE...`: call each suite's target through the gateway, judge, report,
gate.

Exit codes, the worst of the suites': 0 each meets its thresholds, 1 one does not, 2 one is
invalid or its target cannot be called.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import fail, project
from gateway.core.wording import plural

eval_app = typer.Typer(no_args_is_help=True, help="Eval suites: run them, gate on them.")


@contextlib.asynccontextmanager
async def _client(url: str | None, key: str | None, current: Any) -> AsyncIterator[Any]:
    import httpx

    from gateway.evals.runner import GatewayClient

    if url is not None:
        if not key:
            fail("--url needs --key (or GATEWAY_MASTER_KEY) to call the gateway")
        async with httpx.AsyncClient(base_url=url.rstrip("/")) as http:
            yield GatewayClient(http, key)
        return
    # In process: the same app `gateway serve` runs, so calls are priced and logged as usual.
    typer.echo(f"starting the gateway in process ({current.config})", err=True)
    from gateway.api.app import create_app
    from gateway.core.errors import ConfigError
    from gateway.identity.auth import new_master_key

    # A key for this process's app only: a run must not mint and save the project's key.
    key = key or new_master_key()
    try:
        app = create_app(current.model_copy(update={"master_key": key}))
    except ConfigError as exc:
        fail(str(exc))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield GatewayClient(http, key)


@dataclass(slots=True)
class Outcome:
    """One suite's end: 0 passed, 1 failed, 2 could not run (invalid, unknown target)."""

    name: str
    code: int
    problem: str | None = None
    report: str | None = None  # the JSON report
    junit: Any = None  # its <testsuite> element
    markdown: str = ""

    @property
    def word(self) -> str:
        return ("passed", "failed", "could not run")[self.code]


def _not_run(name: str, problem: str) -> Outcome:
    from gateway.evals import reports

    return Outcome(
        name,
        2,
        problem=problem,
        junit=reports.junit_not_run(name, problem),
        markdown=reports.markdown_not_run(name, problem),
    )


async def _run_one(suite: Any, client: Any, options: dict[str, Any], several: bool) -> Outcome:
    """Runs one suite (and its baseline), prints its report, stores the run."""
    import json

    from gateway.cli.progress import case_progress
    from gateway.evals import reports
    from gateway.evals.runner import AnswerCache, TargetError, case_count, run_suite

    if suite.model_test is not None:
        return await _run_model_test(suite, client, options)
    target = options["target"] or suite.target
    baseline = None if options["no_baseline"] else options["baseline"] or suite.baseline
    cache_dir = None if options["no_cache"] else options["data_dir"] / "eval-cache"
    cache = AnswerCache(cache_dir)
    total = case_count(suite)
    named = f"{suite.name}: " if several else ""  # which suite the progress lines are about
    try:
        with case_progress(f"{named}{target}", total) as on_case:
            candidate = await run_suite(suite, client, target, cache, on_case)
        before = None
        if baseline is not None:
            with case_progress(f"{named}baseline {baseline}", total) as on_case:
                before = await run_suite(suite, client, baseline, cache, on_case)
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        return _not_run(suite.name, str(exc))
    verdict = reports.judge_run(candidate, before, suite.spec)
    report = reports.json_report(candidate, before, verdict)
    run_id = None
    if not options["no_store"]:
        try:
            run_id = await client.store_run(json.loads(report))
        except TargetError as exc:
            typer.echo(f"warning: {exc}", err=True)
    sys.stdout.write(reports.terminal(candidate, before, verdict))
    if run_id:
        typer.echo(f"stored as {run_id}")
    return Outcome(
        suite.name,
        0 if verdict.passed else 1,
        report=report,
        junit=reports.junit_suite(candidate),
        markdown=reports.markdown(candidate, before, verdict),
    )


async def _run_model_test(suite: Any, client: Any, options: dict[str, Any]) -> Outcome:
    """A model test (data: and metrics:): the version, and its baseline, predict every row;
    the metrics are judged, reported and the run stored as any other."""
    from gateway.evals import model_reports
    from gateway.evals.model_runs import judge, score
    from gateway.evals.runner import TargetError

    test = suite.model_test
    target = options["target"] or suite.target
    baseline = None if options["no_baseline"] else options["baseline"] or suite.baseline
    for role, chosen in (("--target", target), ("--baseline", baseline)):
        if chosen is not None and chosen.kind != "registry":
            problem = f"{role} {chosen}: a model test targets a registry version, registry:NAME@REF"
            typer.echo(f"error: {problem}", err=True)
            return _not_run(suite.name, problem)
    typer.echo(f"{suite.name}: {target} predicts {plural(test.rows, 'row')}...", err=True)
    try:
        candidate = await score(test, client, target)
        before = await score(test, client, baseline) if baseline is not None else None
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        return _not_run(suite.name, str(exc))
    checks = judge(test, candidate, before)
    record = model_reports.report(suite.name, test, candidate, before, checks)
    run_id = None
    if not options["no_store"]:
        try:
            run_id = await client.store_run(record)
        except TargetError as exc:
            typer.echo(f"warning: {exc}", err=True)
    sys.stdout.write(model_reports.terminal(suite.name, test, candidate, before, checks))
    if run_id:
        typer.echo(f"stored as {run_id}")
    return Outcome(
        suite.name,
        0 if record["verdict"]["passed"] else 1,
        report=model_reports.json_report(record),
        junit=model_reports.junit_suite(suite.name, candidate, checks),
        markdown=model_reports.markdown(suite.name, test, candidate, before, checks),
    )


async def _run(paths: list[Path], options: dict[str, Any]) -> list[Outcome]:
    """Every suite, in order, through one gateway; an invalid one does not stop the others."""
    from gateway.core.errors import ConfigError
    from gateway.evals.suite import load_suite

    several = len(paths) > 1
    outcomes: list[Outcome | None] = []
    loaded = []
    for path in paths:
        try:
            loaded.append((len(outcomes), load_suite(path)))
            outcomes.append(None)  # its place in the summary, filled once it has run
        except ConfigError as exc:
            typer.echo(str(exc), err=True)  # file:line: what is wrong
            outcomes.append(_not_run(path.stem, str(exc)))
    if loaded:
        found = project()
        in_process = options["url"] is None
        options = {**options, "data_dir": found.settings.data_dir}
        notice = found.notice(serving=in_process) if in_process or not options["no_cache"] else None
        if notice:  # where this run falls back on defaults (say, outside any project)
            typer.echo(f"gateway: {notice}", err=True)
        async with _client(options["url"], options["key"], found.settings) as client:
            for index, suite in loaded:
                if index:
                    typer.echo("")  # a blank line between suites' reports
                outcomes[index] = await _run_one(suite, client, options, several)
    return [outcome for outcome in outcomes if outcome is not None]


def _outputs(outcomes: list[Outcome]) -> dict[str, str]:
    """The report files' contents: one suite's as before, several suites' in one file each."""
    import json

    from gateway.evals import reports

    outputs = {
        "junit": reports.junit([o.junit for o in outcomes]),
        "markdown": "\n".join(o.markdown for o in outcomes),
    }
    if len(outcomes) == 1:
        if outcomes[0].report is not None:
            outputs["json"] = outcomes[0].report
        return outputs
    suites = [
        json.loads(o.report) if o.report else {"suite": o.name, "error": o.problem}
        for o in outcomes
    ]
    passed = all(o.code == 0 for o in outcomes)
    outputs["json"] = json.dumps({"passed": passed, "suites": suites}, indent=2) + "\n"
    return outputs


def _summary(outcomes: list[Outcome]) -> None:
    counts = Counter(o.word for o in outcomes)
    parts = [f"{counts[word]} {word}" for word in ("passed", "failed", "could not run")]
    shown = ", ".join(part for part in parts if not part.startswith("0 "))
    typer.echo(f"\n{plural(len(outcomes), 'suite')}: {shown}")
    width = max(len(o.name) for o in outcomes)
    for outcome in outcomes:
        typer.echo(f"  {outcome.name:{width}}  {outcome.word}")


def suite_files(paths: list[Path]) -> list[Path]:
    """Files as given, and the suites (*.yaml, *.yml) of a folder in name order; datasets
    beside them (.jsonl, .csv) are not suites."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not inside:
                fail(f"{path}: no suite files (*.yaml, *.yml) in this folder")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            fail(f"{path}: no such file or folder")
    return found


@eval_app.command("run")
def run(
    suites: Annotated[
        list[Path], typer.Argument(help="Suite files (evals/NAME.yaml) or folders of them.")
    ],
    target: Annotated[
        str | None,
        typer.Option(help="Override: prompt:NAME@REF, model:ALIAS or registry:NAME@REF."),
    ] = None,
    baseline: Annotated[str | None, typer.Option(help="Override the suite's baseline.")] = None,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="Skip the baseline.")] = False,
    url: Annotated[
        str | None, typer.Option(help="A running gateway (default: in process).")
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="GATEWAY_MASTER_KEY", help="Master key for --url.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Call again even if cached.")
    ] = False,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the run.")] = False,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here.")] = None,
    json: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown summary here.")] = None,
) -> None:
    """Run suites against their targets (and baselines); exit 0 all pass, 1 one fails, 2 one
    is invalid or cannot run (the worst wins)."""
    from gateway.evals.suite import Target

    files = suite_files(suites)
    try:
        options = {
            "target": Target.parse(target) if target else None,
            "baseline": Target.parse(baseline) if baseline else None,
            "no_baseline": no_baseline,
            "url": url,
            "key": key,
            "no_cache": no_cache,
            "no_store": no_store,
        }
    except ValueError as exc:
        fail(str(exc))
    # User `python` checks are imported by module path, from the project or the suite's folder.
    for folder in (Path.cwd(), *(path.resolve().parent for path in files)):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    outcomes = asyncio.run(_run(files, options))
    if len(outcomes) > 1:
        _summary(outcomes)
    outputs = _outputs(outcomes)
    for path, name in ((junit, "junit"), (json, "json"), (markdown, "markdown")):
        if path is not None and name in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(outputs[name], encoding="utf-8")
    raise typer.Exit(max(outcome.code for outcome in outcomes))


@eval_app.command("validate")
def validate(
    suites: Annotated[list[Path], typer.Argument(help="Suite files or folders of them.")],
) -> None:
    """Check suite files (and their datasets); exit 2 with file:line errors when invalid."""
    from gateway.core.errors import ConfigError
    from gateway.evals.suite import load_suite

    bad = False
    for path in suite_files(suites):
        try:
            suite = load_suite(path)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            bad = True
            continue
        if suite.model_test is not None:
            test = suite.model_test
            shown = f"model test: {plural(test.rows, 'row')}, {plural(len(test.metrics), 'metric')}"
        else:
            shown = plural(len(suite.cases), "case")
        typer.echo(f"{path}: ok ({shown}, target {suite.target})")
    if bad:
        raise typer.Exit(2)


@eval_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of suite files (for editors)."""
    from gateway.evals.suite import suite_json_schema

    sys.stdout.write(suite_json_schema())

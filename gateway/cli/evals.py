"""`gateway eval run SUITE`: call the target through the gateway, judge, report, gate.

Exit codes: 0 the suite meets its thresholds, 1 it does not, 2 invalid suite or target.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import fail, project

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


async def _run(options: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """The exit code, and the reports to write (by option name)."""
    from gateway.cli.progress import case_progress
    from gateway.core.errors import ConfigError
    from gateway.evals import reports
    from gateway.evals.runner import AnswerCache, TargetError, case_count, run_suite
    from gateway.evals.suite import Target, load_suite

    try:
        suite = load_suite(options["suite"])
        target = Target.parse(options["target"]) if options["target"] else suite.target
        baseline = suite.baseline
        if options["baseline"]:
            baseline = Target.parse(options["baseline"])
        if options["no_baseline"]:
            baseline = None
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        return 2, {}
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2, {}
    found = project()
    in_process = options["url"] is None
    cache_dir = None if options["no_cache"] else found.settings.data_dir / "eval-cache"
    notice = found.notice(serving=in_process) if in_process or cache_dir else None
    if notice:  # where this run falls back on defaults (say, outside any project)
        typer.echo(f"gateway: {notice}", err=True)
    cache = AnswerCache(cache_dir)
    total = case_count(suite)
    async with _client(options["url"], options["key"], found.settings) as client:
        try:
            with case_progress(str(target), total) as on_case:
                candidate = await run_suite(suite, client, target, cache, on_case)
            before = None
            if baseline is not None:
                with case_progress(f"baseline {baseline}", total) as on_case:
                    before = await run_suite(suite, client, baseline, cache, on_case)
        except TargetError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 2, {}
        verdict = reports.judge_run(candidate, before, suite.spec)
        report = reports.json_report(candidate, before, verdict)
        run_id = None
        if not options["no_store"]:
            import json

            try:
                run_id = await client.store_run(json.loads(report))
            except TargetError as exc:
                typer.echo(f"warning: {exc}", err=True)
    sys.stdout.write(reports.terminal(candidate, before, verdict))
    if run_id:
        typer.echo(f"stored as {run_id}")
    outputs = {
        "junit": reports.junit(candidate),
        "json": report,
        "markdown": reports.markdown(candidate, before, verdict),
    }
    return (0 if verdict.passed else 1), outputs


@eval_app.command("run")
def run(
    suite: Annotated[Path, typer.Argument(help="evals/<suite>.yaml")],
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
    """Run a suite against its target (and baseline); exit 0 pass, 1 fail, 2 invalid."""
    options = {
        "suite": suite,
        "target": target,
        "baseline": baseline,
        "no_baseline": no_baseline,
        "url": url,
        "key": key,
        "no_cache": no_cache,
        "no_store": no_store,
        "junit": junit,
        "json": json,
        "markdown": markdown,
    }
    # User `python` checks are imported by module path, from the project or the suite's folder.
    for folder in (Path.cwd(), suite.resolve().parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    code, outputs = asyncio.run(_run(options))
    for path, name in ((junit, "junit"), (json, "json"), (markdown, "markdown")):
        if path is not None and name in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(outputs[name], encoding="utf-8")
    raise typer.Exit(code)


@eval_app.command("validate")
def validate(suites: Annotated[list[Path], typer.Argument(help="Suite files.")]) -> None:
    """Check suite files (and their datasets); exit 2 with file:line errors when invalid."""
    from gateway.core.errors import ConfigError
    from gateway.evals.suite import load_suite

    bad = False
    for path in suites:
        try:
            suite = load_suite(path)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            bad = True
            continue
        typer.echo(f"{path}: ok ({len(suite.cases)} cases, target {suite.target})")
    if bad:
        raise typer.Exit(2)


@eval_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of suite files (for editors)."""
    from gateway.evals.suite import suite_json_schema

    sys.stdout.write(suite_json_schema())

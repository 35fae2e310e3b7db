"""`gateway keys ...` and `gateway costs ...`: work on the database the gateway uses."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import engine, fail, run, usd
from gateway.core.validation import first_problem

if TYPE_CHECKING:
    from gateway.identity.models import KeyInfo

keys_app = typer.Typer(no_args_is_help=True, help="Create, inspect, revoke and rotate keys.")
costs_app = typer.Typer(no_args_is_help=True, help="Spend reports from the request log.")


def _store(writes: bool = False) -> Any:
    from gateway.identity.keys import KeyStore

    return KeyStore(engine(writes))


# Where a field of the key's model comes from on the command line.
OPTIONS = {
    "models": "--model",
    "prompts": "--prompt",
    "rpm_limit": "--rpm",
    "tpm_limit": "--tpm",
    "expires_at": "--expires",
}


def _print_key(info: KeyInfo, key: str | None = None) -> None:
    if key:
        typer.echo(f"key: {key}")
        typer.echo("(shown only this once: store it now)")
    for name, value in info.model_dump().items():
        typer.echo(f"{name}: {json.dumps(value) if isinstance(value, list | dict) else value}")


@keys_app.command("create")
def create(
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    team: Annotated[str | None, typer.Option(help="Team id (created if new).")] = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed alias glob (repeat).")
    ] = None,
    prompts: Annotated[
        list[str] | None, typer.Option("--prompt", help="Allowed prompt name glob (repeat).")
    ] = None,
    log_bodies: Annotated[
        bool, typer.Option("--log-bodies", help="Keep its calls' bodies in the request log.")
    ] = False,
    max_budget: Annotated[float | None, typer.Option(help="USD.")] = None,
    budget_duration: Annotated[str | None, typer.Option(help="1d, 30d, 1mo...")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO date/time of expiry.")] = None,
) -> None:
    """Create a virtual key and print it (once)."""
    from pydantic import ValidationError

    from gateway.identity.models import KeyCreate

    try:
        expires_at = datetime.fromisoformat(expires) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")
    given = {
        "name": name,
        "team": team,
        "models": models or [],
        "prompts": prompts or [],
        "log_bodies": log_bodies,
        "max_budget": max_budget,
        "budget_duration": budget_duration,
        "rpm_limit": rpm,
        "tpm_limit": tpm,
        "expires_at": expires_at,
    }
    try:
        fields = KeyCreate.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        loc, message = first_problem(exc)
        field = str(loc[0]) if loc else ""
        option = OPTIONS.get(field, "--" + field.replace("_", "-"))
        fail(f"{option} ({field}): {message}")
    record, key = run(lambda: _store(writes=True).create(fields.model_dump(exclude_unset=True)))
    _print_key(record.public(), key)


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
) -> None:
    """List keys (never their secrets) with their spend this budget period, budget and limits."""
    from gateway.observability.spend import period_spend

    store = _store()
    records = run(lambda: store.list_keys(team))
    typer.echo(
        f"{'id':22} {'prefix':11} {'name':20} {'team':12} {'spend':>10} {'budget':>10} "
        f"{'period':6} {'rpm':>7} {'tpm':>9} {'state':8}"
    )
    for r in records:
        state = "revoked" if r.revoked else "active"
        spend = budget = "-"
        if r.max_budget is not None:
            budget = usd(r.max_budget)
            spend = usd(period_spend(store.engine, f"key:{r.id}", r.budget_duration))
        period = r.budget_duration or ("total" if r.max_budget is not None else "-")
        typer.echo(
            f"{r.id:22} {r.prefix:11} {(r.name or '-')[:20]:20} {(r.team or '-')[:12]:12} "
            f"{spend:>10} {budget:>10} {period:6} {r.rpm_limit or '-':>7} "
            f"{r.tpm_limit or '-':>9} {state:8}"
        )


@keys_app.command("show")
def show(key_id: str) -> None:
    """Show one key."""
    _print_key(run(lambda: _store().get(key_id)).public())


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key; every replica refuses it within a second."""
    record = run(lambda: _store(writes=True).revoke(key_id))
    typer.echo(f"revoked {record.id}")


@keys_app.command("rotate")
def rotate(key_id: str) -> None:
    """Issue a new secret for a key; the old one stops working."""
    record, key = run(lambda: _store(writes=True).rotate(key_id))
    _print_key(record.public(), key)


@costs_app.command("report")
def report(
    group_by: Annotated[str, typer.Option(help="key, team, model, prompt or day.")] = "model",
    since: Annotated[str | None, typer.Option("--from", help="ISO date/time.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO date/time.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
) -> None:
    """Requests, tokens and cost grouped by key, team, model, prompt or day."""
    from gateway.observability.spend import cost_report

    if group_by not in ("key", "team", "model", "prompt", "day"):
        fail(f"--group-by must be key, team, model, prompt or day, not {group_by!r}")
    from gateway.core.errors import GatewayError
    from gateway.core.times import parse_time

    try:
        start, end = parse_time(since, "from"), parse_time(until, "to")
    except GatewayError as exc:
        fail(f"--{exc.param}: {exc.message}")
    found = cost_report(_store().engine, group_by, start, end)  # type: ignore[arg-type]
    rows = [row.model_dump() for row in found]  # the group's own column, then the totals
    columns = [group_by, "requests", "errors", "input_tokens", "output_tokens", "cost_usd"]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return
    typer.echo(
        f"{group_by:30} {'requests':>9} {'errors':>7} {'in tok':>10} {'out tok':>10} {'USD':>12}"
    )
    for row in rows:
        typer.echo(
            f"{str(row[group_by])[:30]:30} {row['requests']:>9} {row['errors']:>7} "
            f"{row['input_tokens']:>10} {row['output_tokens']:>10} {row['cost_usd']:>12.6f}"
        )
    typer.echo(
        f"{'total':30} {sum(r['requests'] for r in rows):>9} {'':>7} {'':>10} {'':>10} "
        f"{sum(r['cost_usd'] for r in rows):>12.6f}"
    )

"""`gateway teams ...`: teams with budgets and limits, on the database the gateway uses (as
POST/GET/PATCH/DELETE /v1/teams, with the same fields)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import engine, fail, run
from gateway.core.validation import first_problem

if TYPE_CHECKING:
    from gateway.identity.models import TeamInfo

teams_app = typer.Typer(
    no_args_is_help=True, help="Teams: budgets and limits shared by their keys."
)

# Where a field of the team's model comes from on the command line.
OPTIONS = {"rpm_limit": "--rpm", "tpm_limit": "--tpm", "id": "TEAM"}

MaxBudget = Annotated[float | None, typer.Option(help="USD the team's keys may spend together.")]
BudgetDuration = Annotated[
    str | None, typer.Option(help="When the budget starts again: 1d, 30d, 1mo... (none: never).")
]
Rpm = Annotated[int | None, typer.Option("--rpm", help="Requests per minute, all keys together.")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="Tokens per minute, all keys together.")]
Metadata = Annotated[str | None, typer.Option(help='A JSON object, e.g. \'{"owner": "ana"}\'.')]


def _store(writes: bool = False) -> Any:
    from gateway.identity.keys import KeyStore

    return KeyStore(engine(writes))


def _fields(model: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The options given, validated by the API's own model (TeamCreate or TeamUpdate)."""
    from pydantic import ValidationError

    metadata = given.get("metadata")
    if metadata is not None:
        try:
            given["metadata"] = json.loads(metadata)
        except json.JSONDecodeError as exc:
            fail(f"--metadata is not JSON: {exc}")
        if not isinstance(given["metadata"], dict):
            fail("--metadata must be a JSON object")
    try:
        fields = model.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        loc, message = first_problem(exc)
        field = str(loc[0]) if loc else ""
        option = OPTIONS.get(field, "--" + field.replace("_", "-"))
        fail(f"{option} ({field}): {message}")
    values: dict[str, Any] = fields.model_dump(exclude_unset=True)
    return values


def _print(team: TeamInfo, keys: list[str]) -> None:
    for name, value in team.model_dump().items():
        typer.echo(f"{name}: {json.dumps(value) if isinstance(value, list | dict) else value}")
    typer.echo(f"keys: {', '.join(keys) if keys else '(none)'}")


def _show(store: Any, team_id: str) -> None:
    team = run(lambda: store.team(team_id))
    keys = [record.id for record in store.list_keys(team_id)]
    _print(team.public(), keys)


@teams_app.command("create")
def create(
    team: Annotated[str, typer.Argument(help="The team's id, as keys name it (--team).")],
    max_budget: MaxBudget = None,
    budget_duration: BudgetDuration = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    metadata: Metadata = None,
) -> None:
    """Create a team (or change the given fields of an existing one, as POST /v1/teams does)."""
    from gateway.identity.models import TeamCreate

    given = {
        "id": team,
        "max_budget": max_budget,
        "budget_duration": budget_duration,
        "rpm_limit": rpm,
        "tpm_limit": tpm,
        "metadata": metadata,
    }
    fields = _fields(TeamCreate, given)
    store = _store(writes=True)
    existed = any(t.id == team for t in store.list_teams())
    run(lambda: store.upsert_team(fields.pop("id"), fields))
    typer.echo(f"updated team {team} (it existed)" if existed else f"created team {team}")
    _show(store, team)


@teams_app.command("list")
def list_teams() -> None:
    """Teams with their budgets, limits and how many keys they have."""
    store = _store()
    teams = store.list_teams()
    counts: dict[str, int] = {}
    for record in store.list_keys():
        if record.team:
            counts[record.team] = counts.get(record.team, 0) + 1
    typer.echo(f"{'id':24} {'budget':>10} {'period':8} {'rpm':>8} {'tpm':>10} {'keys':>5}")
    for team in teams:
        budget = f"{team.max_budget:.2f}" if team.max_budget is not None else "-"
        typer.echo(
            f"{team.id[:24]:24} {budget:>10} {team.budget_duration or '-':8} "
            f"{team.rpm_limit or '-':>8} {team.tpm_limit or '-':>10} {counts.get(team.id, 0):>5}"
        )


@teams_app.command("show")
def show(team: Annotated[str, typer.Argument(help="The team's id.")]) -> None:
    """One team: its budget, limits, metadata and keys."""
    _show(_store(), team)


@teams_app.command("update")
def update(
    team: Annotated[str, typer.Argument(help="The team's id.")],
    max_budget: MaxBudget = None,
    budget_duration: BudgetDuration = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    metadata: Metadata = None,
) -> None:
    """Change the fields given; the others stay."""
    from gateway.identity.models import TeamUpdate

    given = {
        "max_budget": max_budget,
        "budget_duration": budget_duration,
        "rpm_limit": rpm,
        "tpm_limit": tpm,
        "metadata": metadata,
    }
    fields = _fields(TeamUpdate, given)
    store = _store(writes=True)
    run(lambda: store.team(team))  # an unknown team is an error here, not a new team
    run(lambda: store.upsert_team(team, fields))
    typer.echo(f"updated team {team}")
    _show(store, team)


@teams_app.command("delete")
def delete(team: Annotated[str, typer.Argument(help="The team's id.")]) -> None:
    """Delete the team and revoke its keys (their rows and spend stay in the request log)."""
    store = _store(writes=True)
    revoked = run(lambda: store.delete_teams([team]))
    keys = ", ".join(record.id for record in revoked) if revoked else "none"
    typer.echo(f"deleted team {team}; keys revoked: {keys}")

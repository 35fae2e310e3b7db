"""`gateway logs`: the request log, read from the database the gateway writes it to.

`gateway logs` prints the most recent calls oldest first, as `tail` does; `--follow` then
prints new ones as they are written until Ctrl-C; `gateway logs show ID` prints one in full.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import engine, fail, usd

if TYPE_CHECKING:
    from gateway.observability.models import LogRow

logs_app = typer.Typer(
    help="Read the request log: recent calls (filters as options), --follow, show ID."
)

# Where a query parameter of GET /v1/logs comes from on the command line.
OPTIONS = {"key_id": "--key", "error": "--errors"}
COLUMNS = (
    ("time", 24),
    ("id", 24),
    ("key", 20),
    ("model", 22),
    ("prompt", 26),
    ("status", 6),
    ("ms", 8),
    ("in", 7),
    ("out", 7),
    ("USD", 10),
)


def _gateway_errors(action: Any) -> Any:
    """Runs a query; a refused value is a one-line message naming its option, exit 2."""
    from gateway.core.errors import GatewayError

    try:
        return action()
    except GatewayError as exc:
        default = f"--{(exc.param or '').replace('_', '-')}"
        option = OPTIONS.get(exc.param or "", default) if exc.param else None
        fail(f"{option}: {exc.message}" if option and exc.param != "id" else exc.message)


def _cells(row: LogRow) -> list[str]:
    prompt = row.prompt_name or "-"
    if row.prompt_name and row.prompt_version:
        prompt = f"{row.prompt_name}@{row.prompt_version}"
    return [
        row.created_at[:23].replace("+00:00", "") + "Z",
        row.id,
        row.key_id or "-",
        row.model or "-",
        prompt,
        str(row.status),
        f"{row.latency_ms:.1f}",
        str(row.input_tokens),
        str(row.output_tokens),
        usd(row.cost_usd),
    ]


def _line(cells: list[str]) -> str:
    shown = []
    for (_, width), cell in zip(COLUMNS, cells, strict=True):
        cell = cell if len(cell) <= width else cell[: width - 1] + "…"
        shown.append(cell.rjust(width) if width <= 10 else cell.ljust(width))
    return " ".join(shown).rstrip()


def _print(rows: list[LogRow], as_json: bool) -> None:
    for row in rows:
        typer.echo(row.model_dump_json() if as_json else _line(_cells(row)))


@logs_app.callback(invoke_without_command=True)
def recent(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", help="A key id, or 'master'.")] = None,
    team: Annotated[str | None, typer.Option(help="A team id.")] = None,
    model: Annotated[str | None, typer.Option(help="The alias called.")] = None,
    prompt: Annotated[str | None, typer.Option(help="A prompt, NAME or NAME@VERSION.")] = None,
    model_version: Annotated[
        str | None,
        typer.Option(help="The registry version that answered, NAME@N (or NAME: any version)."),
    ] = None,
    status: Annotated[str | None, typer.Option(help="A status (429) or class (4xx).")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only errors (from 400).")] = False,
    since: Annotated[str | None, typer.Option(help="ISO 8601 date/time, included.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 date/time, excluded.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent calls (at most 1000).")] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new calls until Ctrl-C.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks (--follow).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The most recent calls, oldest first (filters combine)."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.observability.log_query import MAX_LIMIT, Follower, LogFilter, list_logs

    if interval <= 0:
        fail("--interval: must be a positive number of seconds")
    if not 1 <= limit <= MAX_LIMIT:  # the API's own words speak of pages and 'next'
        fail(f"--limit: must be 1 to {MAX_LIMIT} calls, not {limit}")
    filters = _gateway_errors(
        lambda: LogFilter.parse(
            key_id=key,
            team=team,
            model=model,
            prompt=prompt,
            model_version=model_version,
            status=status,
            error=True if errors else None,
            since=since,
            until=until,
        )
    )
    db = engine()
    # Started first, so that a row written while the recent ones are read is printed once.
    follower = Follower(db, filters) if follow else None
    page = _gateway_errors(lambda: list_logs(db, filters, limit))
    if not as_json:
        typer.echo(_line([name for name, _ in COLUMNS]))
    _print(list(reversed(page.data)), as_json)
    if follower is None:
        return
    follower.saw(page.data)
    try:
        while True:
            time.sleep(interval)
            _print(follower.poll(), as_json)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends: not a failure


@logs_app.command("show")
def show(request_id: Annotated[str, typer.Argument(help="The x-gateway-request-id.")]) -> None:
    """One call in full, with its request and response bodies when its key logs them."""
    from gateway.observability.log_query import get_log

    db = engine()
    row = _gateway_errors(lambda: get_log(db, request_id))
    for name, value in row.model_dump().items():
        if name.endswith("_body") and value:
            typer.echo(f"{name}:")
            typer.echo(_indented(value))
        else:
            typer.echo(f"{name}: {'-' if value is None else value}")


def _indented(body: str) -> str:
    """A JSON body pretty-printed, anything else as it is; indented under its name."""
    try:
        shown = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        shown = body
    return "\n".join("  " + line for line in shown.splitlines())

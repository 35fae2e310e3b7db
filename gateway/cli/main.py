"""The `gateway` command: serve, config check (more groups join as features land)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from gateway.cli.admin import costs_app, keys_app
from gateway.cli.drift import drift_app
from gateway.cli.evals import eval_app
from gateway.cli.logs import logs_app
from gateway.cli.prompts import prompts_app
from gateway.cli.registry import registry_app
from gateway.cli.teams import teams_app
from gateway.core.errors import ConfigError

if TYPE_CHECKING:
    from gateway.core.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="LLMOps gateway: an OpenAI-compatible proxy with routing, cost and governance.",
)
config_app = typer.Typer(no_args_is_help=True, help="Validate gateway configuration files.")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")
app.add_typer(costs_app, name="costs")
app.add_typer(logs_app, name="logs")
app.add_typer(prompts_app, name="prompts")
app.add_typer(eval_app, name="eval")
app.add_typer(registry_app, name="registry")
app.add_typer(drift_app, name="drift")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(help="Config file (GATEWAY_CONFIG).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GATEWAY_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    server: Annotated[
        str, typer.Option(help="HTTP server: uvicorn (default) or granian.")
    ] = "uvicorn",
) -> None:
    """Start the gateway."""
    for name, value in (("CONFIG", config), ("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"GATEWAY_{name}"] = str(value)
    from gateway.cli.common import project
    from gateway.core.config import load_config
    from gateway.core.general_settings import settings_from_config
    from gateway.identity.auth import resolve_master_key

    found = project()
    try:
        loaded = load_config(found.settings.config)
        # The file's general_settings.master_key, when GATEWAY_MASTER_KEY is unset.
        settings = settings_from_config(found.settings, loaded)
        # Resolved here, once, so several workers share one key instead of racing to make
        # one; refused over a shared database when no key is given (replicas must agree).
        master_key = resolve_master_key(settings)
    except ConfigError as exc:
        fail(str(exc))
    models = loaded.aliases()
    # Workers build their settings from the environment: give them the paths found here.
    for name in ("config", "data_dir", "prompts_dir"):
        os.environ[f"GATEWAY_{name.upper()}"] = str(getattr(settings, name))
    if server not in ("uvicorn", "granian"):
        fail(f"--server must be uvicorn or granian, not {server!r}")
    os.environ["GATEWAY_MASTER_KEY"] = master_key
    if settings.workers > 1:
        share_metrics(settings.data_dir / "metrics")
    from gateway.api.server import configure_logging

    configure_logging(settings.log_level)
    notice = found.notice(models=models)
    if notice:  # outside a project: serving on defaults is fine, but never silently
        logging.getLogger("gateway.project").warning(notice)
    run_server(settings, server)


def share_metrics(directory: Path) -> None:
    """Workers write their metrics to files here and a scrape of any worker sums them all.
    Emptied first: the files of an earlier run's workers would be counted again."""
    from gateway.observability.metrics import MULTIPROCESS_DIR

    if os.environ.get(MULTIPROCESS_DIR):
        return  # the operator chose a directory (and owns its cleaning)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)


def run_server(settings: Settings, server: Literal["uvicorn", "granian"] | str) -> None:
    from gateway.api import server as servers

    if server == "granian":
        servers.run_granian(settings)
    else:
        servers.run_uvicorn(settings)


@app.command()
def migrate() -> None:
    """Bring the database to this version's schema, then exit. Under the migration lock
    (PostgreSQL's advisory lock): replicas or jobs running it together wait for one another.
    `gateway serve` does the same at start; this is for a job or init container."""
    from gateway.cli.common import engine
    from gateway.store.db import head_revision

    db = engine(writes=True)
    where = db.url.render_as_string(hide_password=True)
    db.dispose()
    typer.echo(f"{where}: at schema revision {head_revision()}")


@config_app.command("check")
def config_check(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="The gateway.yaml to check (default: GATEWAY_CONFIG, which serve reads)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 when anything is reported: settings not applied or applied "
            "differently, deployments left out, unpriced deployments (for CI).",
        ),
    ] = False,
) -> None:
    """Validate a config file and say what the gateway will not do as LiteLLM would; exit 0
    when it loads, 2 with file:line errors when not (or a LiteLLM feature it refuses)."""
    from gateway.cli.common import settings
    from gateway.cli.config_report import report_lines
    from gateway.core.config import load_config
    from gateway.core.general_settings import settings_from_config
    from gateway.core.wording import plural

    current = settings()
    path = path or current.config
    try:
        config = load_config(path)
        settings_from_config(current, config)  # a master key or database variable unset
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    deployments = plural(len(config.model_list), "deployment")
    lines = report_lines(config)
    summary = "every setting in it is applied" if not lines else "it reports:"
    typer.echo(f"{path}: ok ({deployments}, {plural(len(config.aliases()), 'model')}); {summary}")
    for line in lines:
        typer.echo(line)
    if strict and lines:
        raise typer.Exit(1)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of gateway.yaml (for editors: yaml-language-server)."""
    from gateway.core.config import config_json_schema

    sys.stdout.write(config_json_schema())


def command() -> Any:
    """The `gateway` command tree as it runs, help screens tidied (cli/help.py)."""
    from gateway.cli.help import tidy

    return tidy(typer.main.get_command(app))


def main() -> None:
    try:
        command()()
    except KeyboardInterrupt:
        sys.exit(130)

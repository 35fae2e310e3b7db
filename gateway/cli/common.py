"""What the CLI's command groups share: one-line errors, the project's settings and the
gateway's database."""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from gateway.core.project import Project

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def project() -> Project:
    """The settings, with their relative defaults anchored at the project found from the
    current folder up (gateway/core/project.py)."""
    from pydantic import ValidationError

    from gateway.core.project import discover
    from gateway.core.settings import Settings
    from gateway.core.validation import first_problem

    try:
        return discover(Settings())
    except ValidationError as exc:
        loc, message = first_problem(exc)
        fail(f"GATEWAY_{str(loc[0] if loc else '').upper()}: {message}")


def _config_database_url(found: Project) -> str | None:
    """A LiteLLM config's general_settings.database_url, which the gateway serves from when
    GATEWAY_DATABASE_URL is unset: the CLI must read and write the same database."""
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError
    from gateway.core.general_settings import database_url_from_config

    if found.builtin_config or not found.settings.config.is_file():
        return None
    try:
        return database_url_from_config(load_config(found.settings.config))
    except ConfigError as exc:
        fail(str(exc))


def settings() -> Any:
    return project().settings


def _database_url(found: Project, writes: bool) -> str:
    """Where the data is. Only a command that records something may make a data folder, and
    only in a project (or where GATEWAY_DATA_DIR says): a stray `.gateway/` elsewhere would
    hold nothing and then pass for a project itself."""
    from gateway.store.db import database_url

    current = found.settings
    from_config = None if current.database_url else _config_database_url(found)
    if from_config:
        return from_config
    if current.database_url or current.data_dir.is_dir():
        return str(database_url(current.database_url, current.data_dir))
    if found.stray:
        fail(found.no_project(writes))
    if writes:
        return str(database_url(None, current.data_dir))
    if "data_dir" in found.explicit:
        fail(f"GATEWAY_DATA_DIR {current.data_dir}: no such folder (nothing recorded there yet)")
    # A project with nothing recorded yet (a fresh clone): read an empty database, make nothing.
    return "sqlite://"


def engine(writes: bool = False) -> Any:
    """The database the gateway uses, migrated to the current schema. `writes`: the command
    records something, so it may make the project's data folder."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.store.db import make_engine, migrate
    from gateway.store.errors import cause

    found = project()
    current = found.settings
    url = _database_url(found, writes)
    try:
        db = make_engine(url, current.database_timeout)
        migrate(db)
    except SQLAlchemyError as exc:
        fail(f"cannot open the database: {cause(exc)}")  # one line: the driver's own
    return db


def usd(amount: float) -> str:
    """Dollars with the decimals a small amount needs: 1.00, 0.005, 0.000006 (never a
    misleading 0.00 for a few calls' worth)."""
    shown = f"{amount:.8f}".rstrip("0")
    whole, _, cents = shown.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def run(action: Callable[[], T]) -> T:
    """Runs a store action; a gateway error becomes a one-line message and exit 2."""
    from gateway.core.errors import GatewayError

    try:
        return action()
    except GatewayError as exc:
        fail(exc.message)


def actor() -> str:
    """Who runs the command, as history records name them: Git's user.name, else the login."""
    try:
        name = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        name = ""
    return name or getpass.getuser()


def run_gated(action: Callable[[], T]) -> T:
    """Runs a label move: a refusal by the eval gate fails as a failed suite does (exit 1),
    any other gateway error as bad input (exit 2)."""
    from gateway.core.errors import GatewayError
    from gateway.evals.gates import EVAL_REQUIRED

    try:
        return action()
    except GatewayError as exc:
        fail(exc.message, code=1 if exc.code == EVAL_REQUIRED else 2)

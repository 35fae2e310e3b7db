"""What the CLI's command groups share: one-line errors and the gateway's database."""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings() -> Any:
    from pydantic import ValidationError

    from gateway.core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"GATEWAY_{str(first['loc'][0]).upper()}: {first['msg']}")


def engine() -> Any:
    """The database the gateway uses, migrated to the current schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.store.db import database_url, make_engine, migrate

    current = settings()
    try:
        url = database_url(current.database_url, current.data_dir)
        db = make_engine(url, current.database_timeout)
        migrate(db)
    except SQLAlchemyError as exc:
        fail(f"cannot open the database: {exc.__class__.__name__}: {exc.args[0]}")
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

"""Bounded waits for PostgreSQL: a database that stops answering must not hang the gateway.

Three layers, because each covers a failure the others miss:
- libpq's `connect_timeout` bounds opening a connection (a server that accepts the TCP
  connection but never completes the handshake);
- the server's `statement_timeout` cancels a slow statement cleanly, keeping the connection;
- a client-side deadline on every wait for the server (`DeadlineConnection`) covers a server
  that is silent altogether (stopped, hung, frozen host): its kernel still ACKs our packets,
  so neither TCP keepalives nor `tcp_user_timeout` fire, and only we can give up. It is a
  little longer than the statement timeout, so a live server always answers first.
Keepalives and `tcp_user_timeout` still matter for a host that vanished from the network.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg import errors
from psycopg.abc import RV, PQGen

# The server gets this long beyond the statement timeout to report its own cancellation.
ANSWER_MARGIN_S = 2.0


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server ends after `answer_timeout`
    seconds (None: no limit, for migrations). Past it the connection is closed (its state is
    unknown) and an OperationalError says so; the pool then discards it."""

    answer_timeout: float | None = None

    def wait(
        self,
        gen: PQGen[RV],
        interval: float = 0.1,
        timeout: float | None = None,
    ) -> RV:
        limit = self.answer_timeout if timeout is None else timeout
        try:
            return super().wait(gen, interval, limit)
        except errors._WaitTimeout:  # psycopg's own signal that `limit` expired
            if timeout is not None:
                raise  # a caller that chose its own timeout handles it
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g} s (GATEWAY_DATABASE_TIMEOUT)"
            ) from None


def connect_parameters(timeout: float) -> dict[str, Any]:
    """libpq parameters bounding connection set-up and statements (the URL's own win)."""
    return {
        "connect_timeout": max(2, math.ceil(timeout)),  # libpq: whole seconds, at least 2
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": int((timeout + ANSWER_MARGIN_S) * 1000),
    }


def statement_timeout_option(options: str | None, timeout: float) -> str:
    """`options` with a statement timeout added, unless it already sets one."""
    options = options or ""
    if "statement_timeout" in options:
        return options
    return f"{options} -c statement_timeout={int(timeout * 1000)}".strip()


def connect(cargs: list[Any], cparams: dict[str, Any], timeout: float) -> DeadlineConnection:
    """Opens a DeadlineConnection with the gateway's bounds under whatever the URL set."""
    params = {**connect_parameters(timeout), **cparams}
    params["options"] = statement_timeout_option(params.get("options"), timeout)
    connection = DeadlineConnection.connect(*cargs, **params)
    connection.answer_timeout = timeout + ANSWER_MARGIN_S
    return connection


def set_answer_timeout(dbapi_connection: Any, seconds: float | None) -> float | None:
    """Changes one connection's client-side deadline; returns the previous one."""
    if not isinstance(dbapi_connection, DeadlineConnection):
        return None
    previous = dbapi_connection.answer_timeout
    dbapi_connection.answer_timeout = seconds
    return previous

"""Reading the request log back: filters, keyset pages (newest first), one row in full, and
the rows a follower has not printed yet. `GET /v1/logs` and `gateway logs` share all of it.

Pages are keyed on (created_at, id) rather than an offset: a page deep into a large table
costs what the first one does (an index range scan from the cursor), and rows written
meanwhile neither repeat nor shift the pages that follow. The cursor is opaque to clients
(base64url of the last row's time and id), so its form can change.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Engine, and_, literal_column, or_, select

from gateway.core.errors import BadRequest, NotFound
from gateway.core.model_refs import NAME, VERSION
from gateway.core.times import parse_time, utc
from gateway.observability.models import LogDetail, LogPage, LogRow
from gateway.store.tables import request_log

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
STATUS = re.compile(r"(?P<code>[1-5][0-9]{2})|(?P<family>[1-5])xx", re.IGNORECASE)
ERRORS = (400, 599)
SUCCESSES = (100, 399)
BODIES = ("request_body", "response_body")
SUMMARY = [c for c in request_log.columns if c.name not in BODIES]
# The answer's name for a column, where it differs: `model` is what callers asked for.
RENAMED = {"alias": "model"}
# Error rows have a partial index (store/tables.py). SQLite uses a partial index only when the
# query repeats its condition with the same literal (not a bound parameter), so it is.
IS_ERROR = request_log.c.status >= literal_column("400")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows: each field given narrows the set. `status` is an inclusive range,
    `since` is included and `until` excluded (both timezone-aware)."""

    key_id: str | None = None
    key_ids: tuple[str, ...] | None = None  # any of these (LiteLLM's user_id: a user's keys)
    team: str | None = None
    model: str | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    model_version: str | None = None  # NAME@N, or NAME@ for any version of NAME
    status: tuple[int, int] | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        key_id: str | None = None,
        team: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        model_version: str | None = None,
        status: str | None = None,
        error: bool | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> LogFilter:
        """From what a caller typed; a value that cannot be read is a 400 naming it."""
        name, version = _prompt(prompt)
        return cls(
            key_id=key_id or None,
            team=team or None,
            model=model or None,
            prompt_name=name,
            prompt_version=version,
            model_version=_model_version(model_version),
            status=_status(status, error),
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
        )

    def conditions(self) -> list[ColumnElement[bool]]:
        c = request_log.c
        found: list[ColumnElement[bool]] = []
        for column, value in (
            (c.key_id, self.key_id),
            (c.team, self.team),
            (c.alias, self.model),
            (c.prompt_name, self.prompt_name),
            (c.prompt_version, self.prompt_version),
        ):
            if value is not None:
                found.append(column == value)
        if self.model_version is not None:
            if self.model_version.endswith("@"):  # names hold no LIKE wildcard but '_'
                prefix = self.model_version.replace("_", "\\_")
                found.append(c.model_version.like(f"{prefix}%", escape="\\"))
            else:
                found.append(c.model_version == self.model_version)
        if self.key_ids is not None:
            found.append(c.key_id.in_(self.key_ids))
        if self.status is not None:
            low, high = self.status
            if low >= ERRORS[0]:
                found.append(IS_ERROR)
            found.append(c.status == low if low == high else c.status.between(low, high))
        if self.since is not None:
            found.append(c.created_at >= self.since)
        if self.until is not None:
            found.append(c.created_at < self.until)
        return found

    def only_key(self, key_id: str) -> LogFilter:
        return replace(self, key_id=key_id)


def _prompt(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    name, at, version = value.partition("@")
    if not name or (at and not version):
        raise BadRequest(
            f"'prompt' must be a prompt name or NAME@VERSION (e.g. support-triage or "
            f"support-triage@3f2a9c01b7de), not {value!r}.",
            param="prompt",
        )
    return name, version or None


def _model_version(value: str | None) -> str | None:
    """NAME@N as rows record it, or NAME for its every version (as NAME@, the prefix)."""
    if not value:
        return None
    name, at, version = value.partition("@")
    if NAME.fullmatch(name) and not at:
        return f"{name}@"
    if NAME.fullmatch(name) and VERSION.fullmatch(version):
        return value
    raise BadRequest(
        f"'model_version' must be a registry model NAME or NAME@N (e.g. iris or iris@3): rows "
        f"record the version number that answered, not its label; not {value!r}.",
        param="model_version",
    )


def _status(value: str | None, error: bool | None) -> tuple[int, int] | None:
    chosen: tuple[int, int] | None = None
    if value:
        match = STATUS.fullmatch(value.strip())
        if match is None:
            raise BadRequest(
                f"'status' must be an HTTP status (429) or a class (2xx, 4xx, 5xx), not "
                f"{value!r}; for every error give error=true.",
                param="status",
            )
        if match["code"]:
            chosen = (int(match["code"]), int(match["code"]))
        else:
            family = int(match["family"]) * 100
            chosen = (family, family + 99)
    if error is None:
        return chosen
    wanted = ERRORS if error else SUCCESSES
    if chosen is None:
        return wanted
    low, high = max(chosen[0], wanted[0]), min(chosen[1], wanted[1])
    if low > high:
        raise BadRequest(
            f"'error={str(error).lower()}' and 'status={value}' select no row together: "
            f"give one of them.",
            param="error",
        )
    return low, high


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(
            f"'limit' must be between 1 and {MAX_LIMIT} rows per page, not {limit}; follow "
            f"'next' for more.",
            param="limit",
        )
    return limit


def encode_cursor(row: LogRow) -> str:
    raw = orjson.dumps([row.created_at, row.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = orjson.loads(raw)
        if not isinstance(moment, str) or not isinstance(row_id, str):
            raise ValueError(cursor)
        return utc(datetime.fromisoformat(moment)), row_id
    except (ValueError, TypeError, OverflowError, binascii.Error):  # JSONDecodeError: a ValueError
        raise BadRequest(
            "'after' is not a cursor of this log: pass the 'next' of the previous page "
            "unchanged (or leave 'after' out for the newest rows).",
            param="after",
        ) from None


def _summary(row: Any) -> dict[str, Any]:
    shown = {RENAMED.get(name, name): value for name, value in row._mapping.items()}
    for name in ("created_at", "finished_at"):
        shown[name] = utc(shown[name]).isoformat()
    for name in ("stream", "estimated", "recovered"):
        shown[name] = bool(shown[name])
    return shown


def list_logs(
    engine: Engine, filters: LogFilter, limit: int = DEFAULT_LIMIT, after: str | None = None
) -> LogPage:
    """One page, newest first; `after` is the `next` of the page before."""
    check_limit(limit)
    query = select(*SUMMARY).where(*filters.conditions())
    if after is not None:
        moment, row_id = decode_cursor(after)
        created = request_log.c.created_at
        # The plain bound keeps the index range scan; the OR only breaks ties within it.
        query = query.where(created <= moment, or_(created < moment, request_log.c.id < row_id))
    query = query.order_by(request_log.c.created_at.desc(), request_log.c.id.desc())
    with engine.connect() as connection:
        found = connection.execute(query.limit(limit + 1)).all()
    rows = [LogRow.model_validate(_summary(r)) for r in found[:limit]]
    more = len(found) > limit
    return LogPage(data=rows, has_more=more, next=encode_cursor(rows[-1]) if more else None)


def get_log(engine: Engine, request_id: str) -> LogDetail:
    query = select(request_log).where(request_log.c.id == request_id)
    with engine.connect() as connection:
        found = connection.execute(query).first()
    if found is None:
        raise no_row(request_id)
    return LogDetail.model_validate(_summary(found))


def no_row(request_id: str) -> NotFound:
    return NotFound(
        f"No request-log row with id {request_id!r} (the x-gateway-request-id of a call).",
        param="id",
    )


class Follower:
    """The rows written since it last looked, each once, oldest first: what `tail -f` is
    to a file.

    Rows are written when a call ends, in batches, so a row may appear after others that
    began later; each look reads the rows that ended since a little before the newest end
    seen (`slack`) and leaves out those already printed. Only rows begun within `lookback`
    are read (the created_at index bounds the scan): a call longer than that, or a row
    replayed from the spool after an outage longer than `slack`, shows in `gateway logs`
    but not in a follow already running.
    """

    def __init__(
        self,
        engine: Engine,
        filters: LogFilter,
        *,
        lookback: timedelta = timedelta(minutes=10),
        slack: timedelta = timedelta(seconds=10),
    ) -> None:
        self.engine = engine
        self.filters = filters
        self.lookback = lookback
        self.slack = slack
        self._seen: dict[str, datetime] = {}
        self._newest = datetime.now(UTC)
        self.poll()  # what is there now counts as printed: start it before listing the recent

    def saw(self, rows: list[LogRow]) -> None:
        """Rows printed otherwise (the recent ones listed after it started): not again."""
        for row in rows:
            self._seen[row.id] = datetime.fromisoformat(row.finished_at)

    def poll(self) -> list[LogRow]:
        now = datetime.now(UTC)
        c = request_log.c
        since = self._newest - self.slack
        query = (
            select(*SUMMARY)
            .where(*self.filters.conditions())
            .where(and_(c.created_at >= now - self.lookback, c.finished_at >= since))
            .order_by(c.created_at, c.id)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        fresh = []
        for row in found:
            shown = LogRow.model_validate(_summary(row))
            if shown.id in self._seen:
                continue
            finished = datetime.fromisoformat(shown.finished_at)
            self._seen[shown.id] = finished
            self._newest = max(self._newest, finished)
            fresh.append(shown)
        horizon = self._newest - self.slack
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        return fresh

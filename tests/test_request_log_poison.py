"""One row the database cannot hold never costs any other row: fields are bounded before they
are written, a row refused anyway is isolated and quarantined, and the replay of the spool
never stops at one file."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select

from gateway.observability.log_rows import storable
from gateway.observability.request_log import RequestLogWriter
from gateway.store.db import make_engine
from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, GatewayFactory

USER = [{"role": "user", "content": "hello"}]


def _row(request_id: str, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": request_id,
        "created_at": now,
        "finished_at": now,
        "route": "chat",
        "status": 200,
        "latency_ms": 1.0,
        **fields,
    }


def _stored(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        return {r["id"]: dict(r) for r in connection.execute(select(request_log)).mappings()}


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(request_log)).scalar_one())


def _quarantined(spool: Path) -> list[dict[str, Any]]:
    lines = [
        line
        for path in sorted((spool / "quarantine").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    return [orjson.loads(line) for line in lines]


def test_poison_model_names_cost_no_other_row(
    gateway: GatewayFactory, pg_url: str, tmp_path: Path
) -> None:
    """Through the real gateway on PostgreSQL: model names with a NUL and of 300 characters
    are refused to their caller and logged (bounded), and every other call's row is written
    in the same batches."""
    base = gateway(database_url=pg_url)
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    names = ["local/echo"] * 20 + ["bad\x00name", "m" * 300, "é\x00" * 150] + ["local/echo"] * 20
    statuses = []
    for name in names:
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers=headers,
            json={"model": name, "messages": USER},
            timeout=30,
        )
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text
    assert statuses.count(200) == 40

    engine = make_engine(pg_url)
    deadline = time.monotonic() + 20
    while _count(engine) < len(names) and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = _stored(engine)
    engine.dispose()
    assert len(stored) == len(names)
    aliases = sorted({r["alias"] for r in stored.values()} - {"local/echo"})
    assert aliases == sorted(["badname", "m" * 200, "é" * 150])
    spool = tmp_path / ".gateway" / "spool"
    assert not list(spool.glob("*.jsonl"))  # nothing was waiting on the disk


def test_fields_are_bounded_to_their_columns(engine: Engine, tmp_path: Path) -> None:
    """Each kind of value a column cannot hold, in one batch, on SQLite and PostgreSQL."""
    rows = [
        _row("nul", alias="a\x00b", request_body="body\x00with nul", team="t\x00"),
        _row("long", alias="x" * 500, key_id="k" * 40, route="r" * 100, trace_id="t" * 33),
        _row("surrogate", alias="bad \ud800 half", response_body="\udfff"),
        _row("inf", latency_ms=math.inf, upstream_ms=-math.inf, ttft_ms=math.nan),
        _row("nan", latency_ms=math.nan, cost_usd=math.nan),
        _row("huge", input_tokens=2**70, status=2**40, attempts=-(2**40)),
        _row("floaty", output_tokens=7.0, stream=1, estimated=0),
        _row("fine", alias="ordinary", latency_ms=2.5),
    ]
    writer = RequestLogWriter(engine, tmp_path / "spool")
    writer.spool.prepare()
    writer._persist(rows)
    assert (writer.written, writer.spooled, writer.quarantined) == (len(rows), 0, 0)

    stored = _stored(engine)
    assert stored["nul"]["alias"] == "ab"
    assert stored["nul"]["request_body"] == "bodywith nul"
    assert stored["nul"]["team"] == "t"
    assert stored["long"]["alias"] == "x" * 200
    assert stored["long"]["key_id"] == "k" * 32
    assert stored["long"]["route"] == "r" * 64
    assert stored["long"]["trace_id"] == "t" * 32
    assert stored["surrogate"]["alias"] == "bad \ufffd half"
    assert stored["surrogate"]["response_body"] == "\ufffd"
    assert stored["inf"]["latency_ms"] == 0.0  # NOT NULL: zero
    assert stored["inf"]["upstream_ms"] is None  # nullable: NULL
    assert stored["inf"]["ttft_ms"] is None
    assert stored["nan"]["cost_usd"] == 0.0
    assert stored["huge"]["input_tokens"] == 2**63 - 1
    assert stored["huge"]["status"] == 2**31 - 1
    assert stored["huge"]["attempts"] == -(2**31)
    assert stored["floaty"]["output_tokens"] == 7
    assert bool(stored["floaty"]["stream"]) is True
    assert stored["fine"]["alias"] == "ordinary"
    assert stored["fine"]["latency_ms"] == 2.5


def test_clean_rows_are_not_copied() -> None:
    from tests.test_request_log import _every_type

    full = _every_type()[0]  # every column set, as the gateway builds its rows
    clean = [{**full, "id": f"r{i}", "request_body": "x" * 10_000} for i in range(50)]
    assert storable(clean) is clean
    dirty = [*clean, {**full, "alias": "a\x00"}]
    fixed = storable(dirty)
    assert fixed[-1]["alias"] == "a"
    assert all(a is b for a, b in zip(fixed[:-1], clean, strict=True))


def test_rows_the_database_refuses_are_quarantined_and_the_rest_written(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows no bounding can fix (a required field missing, a timestamp that is not one) are
    found by bisecting the batch; each is quarantined with a log line; the rest is written."""
    spool = tmp_path / "spool"
    good = [_row(f"good{i:04d}") for i in range(300)]
    poison = [
        {**_row("no-created-at"), "created_at": None},
        {**_row("bad-time"), "finished_at": "not a time"},
        {**_row("x"), "id": None},
    ]
    batch = good[:100] + poison[:1] + good[100:250] + poison[1:] + good[250:]

    async def scenario() -> RequestLogWriter:
        writer = RequestLogWriter(engine, spool)
        writer.start()
        for row in batch:
            writer.record(row)
        await writer.flush()
        await writer.close()
        return writer

    with caplog.at_level(logging.ERROR, logger="gateway.request_log"):
        writer = asyncio.run(scenario())
    assert (writer.written, writer.quarantined, writer.spooled) == (300, 3, 0)
    assert _count(engine) == 300
    assert not list(spool.glob("*.jsonl"))
    quarantined = _quarantined(spool)
    assert sorted(str(r["id"]) for r in quarantined) == ["None", "bad-time", "no-created-at"]
    refusals = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(refusals) == 3
    assert all("refused" in r.getMessage() for r in refusals)


def test_replay_never_blocks_on_one_file(engine: Engine, tmp_path: Path) -> None:
    """Spool files from an earlier outage: one holds a row the database refuses, one a line
    that is not JSON. Every other row is replayed and no file stays behind."""
    spool = tmp_path / "spool"
    spool.mkdir()

    def spool_file(name: str, lines: list[bytes]) -> None:
        (spool / name).write_bytes(b"".join(line + b"\n" for line in lines))

    def encoded(row: dict[str, Any]) -> bytes:
        return orjson.dumps(row)

    spool_file(
        "1000-a.jsonl",
        [encoded(_row(f"a{i}")) for i in range(5)]
        + [encoded({**_row("refused"), "created_at": "never"})]
        + [encoded(_row(f"a{i}")) for i in range(5, 10)],
    )
    spool_file("2000-b.jsonl", [encoded(_row("b0")), b'{"id": "cut off', encoded(_row("b1"))])
    # Written by an older gateway: fields it did not bound (NUL, overlong) replay bounded.
    spool_file("3000-c.jsonl", [encoded(_row("c0", alias="old\x00" + "y" * 300))])

    async def scenario() -> RequestLogWriter:
        writer = RequestLogWriter(engine, spool)
        writer.start()
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    stored = _stored(engine)
    assert sorted(stored) == sorted([f"a{i}" for i in range(10)] + ["b0", "b1", "c0"])
    assert stored["c0"]["alias"] == "old" + "y" * 197
    assert not list(spool.glob("*.jsonl"))
    assert writer.quarantined == 2
    quarantine = b"".join(p.read_bytes() for p in (spool / "quarantine").glob("*.jsonl"))
    assert b'"refused"' in quarantine
    assert b'{"id": "cut off' in quarantine


def test_a_quarantine_file_can_be_moved_back_once_fixed(engine: Engine, tmp_path: Path) -> None:
    spool = tmp_path / "spool"

    async def scenario(rows: list[dict[str, Any]]) -> None:
        writer = RequestLogWriter(engine, spool)
        writer.start()
        for row in rows:
            writer.record(row)
        await writer.close()

    asyncio.run(scenario([_row("ok"), {**_row("later"), "created_at": "2025-13-45"}]))
    (path,) = (spool / "quarantine").glob("*.jsonl")
    fixed = path.read_bytes().replace(b"2025-13-45", b"2025-12-05T00:00:00+00:00")
    path.unlink()
    (spool / path.name).write_bytes(fixed)  # an operator fixed the row and moved it back
    asyncio.run(scenario([]))
    assert sorted(_stored(engine)) == ["later", "ok"]


def test_a_value_no_column_takes_is_quarantined_not_taken_for_an_outage(
    engine: Engine, tmp_path: Path
) -> None:
    """A value no driver can bind (a set) is the row's fault: the row is quarantined and the
    rest written, and the database is not marked unavailable (nothing goes to the spool)."""
    spool = tmp_path / "spool"
    writer = RequestLogWriter(engine, spool)
    spool.mkdir()
    writer._persist([_row("a"), _row("unbindable", alias={"a", "b"}), _row("b")])
    assert (writer.written, writer.quarantined, writer.spooled) == (2, 1, 0)
    assert writer.healthy
    assert sorted(_stored(engine)) == ["a", "b"]
    [kept] = _quarantined(spool)  # a set has no JSON: the row is kept as its repr
    assert list(kept) == ["unencodable"]
    assert "'unbindable'" in kept["unencodable"]


def test_a_spool_file_of_nothing_but_bad_lines_replays_and_goes(
    engine: Engine, tmp_path: Path
) -> None:
    """No row left to write is no database call (an empty batch is not an outage)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "1000-a.jsonl").write_bytes(b'{"id": "cut off\n')

    async def scenario() -> RequestLogWriter:
        writer = RequestLogWriter(engine, spool)
        writer.start()
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert (writer.quarantined, writer.healthy) == (1, True)
    assert not list(spool.glob("*.jsonl"))

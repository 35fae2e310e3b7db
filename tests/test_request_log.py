"""Every call becomes exactly one request-log row, written off the request path, never lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import Engine, create_engine, func, select

from gateway.observability.request_log import RequestLogWriter
from gateway.store.db import make_engine, migrate
from gateway.store.tables import price_versions, request_log
from tests.conftest import MASTER_KEY, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream

USER = [{"role": "user", "content": "hello log"}]


def rows(db: Path, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{db}")
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            query = select(request_log).order_by(request_log.c.created_at)
            found = [dict(r._mapping) for r in connection.execute(query)]
        if len(found) >= expected:
            break
        time.sleep(0.05)
    engine.dispose()
    return found


def test_one_row_per_call_success_or_error(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = {
        "model_list": [
            fake_model(upstream, "mini", "gpt-4o-mini"),
            fake_model(upstream, "broken", "status=500,id=log500"),
        ],
        "router_settings": {"num_retries": 0},
    }
    base = gateway(config)
    client = sdk(base)
    ok = client.chat.completions.with_raw_response.create(model="mini", messages=USER)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=USER)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken", messages=USER)
    with pytest.raises(openai.AuthenticationError):
        sdk(base, key="wrong").chat.completions.create(model="mini", messages=USER)
    streamed = list(client.chat.completions.create(model="mini", messages=USER, stream=True))
    assert streamed
    httpx.get(f"{base}/healthz")  # not a metered route: no row

    logged = rows(tmp_path / ".gateway" / "gateway.db", 5)
    assert len(logged) == 5
    by_status = [(r["status"], r["alias"], r["error_type"]) for r in logged]
    assert by_status == [
        (200, "mini", None),
        (404, "missing", "invalid_request_error"),
        (502, "broken", "upstream_error"),
        (401, None, "authentication_error"),
        (200, "mini", None),
    ]
    first = logged[0]
    assert first["id"] == ok.headers["x-gateway-request-id"]
    assert first["key_id"] == "master"
    assert first["deployment"] == "mini#0"
    assert first["provider"] == "openai"
    assert first["input_tokens"] == 2
    assert first["output_tokens"] == 3
    assert first["cost_usd"] == pytest.approx(float(ok.headers["x-gateway-cost-usd"]))
    assert first["price_version"].startswith("prices-")
    # The reference resolves to the entry that priced the call (never copied into the row).
    engine = create_engine(f"sqlite:///{tmp_path / '.gateway' / 'gateway.db'}")
    with engine.connect() as connection:
        stored = connection.execute(
            select(price_versions.c.prices).where(price_versions.c.id == first["price_version"])
        ).scalar_one()
    assert stored["mini#0"]["input"] == pytest.approx(0.15e-6)
    assert stored["mini#0"]["source"].startswith("litellm-")
    assert first["latency_ms"] >= first["upstream_ms"] > 0
    assert first["request_body"] is None  # bodies are off unless enabled
    stream_row = logged[4]
    assert stream_row["stream"] is True or stream_row["stream"] == 1
    assert stream_row["ttft_ms"] is not None
    assert stream_row["output_tokens"] == 3  # from the usage the gateway asked for
    assert not stream_row["estimated"]


def test_stream_without_include_usage_still_priced_and_hides_usage_chunk(
    gateway: GatewayFactory, upstream: FakeUpstream
) -> None:
    config = {"model_list": [fake_model(upstream, "mini", "gpt-4o-mini")]}
    base = gateway(config)
    raw = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "mini", "messages": USER, "stream": True},
    )
    events = [e for e in raw.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    cost_comment = events[-2]
    assert cost_comment.startswith(": x-gateway-cost-usd=")
    assert float(cost_comment.split("=", 1)[1]) > 0
    assert not any('"choices":[]' in e for e in events)  # the client did not ask for usage


def test_bodies_logged_redacted_when_enabled(gateway: GatewayFactory, tmp_path: Path) -> None:
    base = gateway(
        {
            "model_list": [{"model_name": "local/echo", "litellm_params": {"model": "local/echo"}}],
            "gateway": {"log_bodies": True},
        }
    )
    secret = "sk-" + "a" * 40
    sdk(base).chat.completions.create(
        model="local/echo", messages=[{"role": "user", "content": f"my key is {secret}"}]
    )
    (row,) = rows(tmp_path / ".gateway" / "gateway.db", 1)
    assert secret not in row["request_body"]
    assert "[REDACTED]" in row["request_body"]
    assert "my key is" in row["response_body"]


def test_spooled_rows_replay_when_the_database_returns(tmp_path: Path) -> None:
    async def scenario() -> int:
        down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
        writer = RequestLogWriter(down, tmp_path / "spool", batch_size=10, retry_interval=0.1)
        writer.start()
        for index in range(25):
            writer.record(_row(f"req{index:03d}"))
        await writer.flush()
        assert writer.spooled == 25
        assert len(list((tmp_path / "spool").glob("*.jsonl"))) == 3
        # The database comes back (here: a real SQLite file); the spool is replayed by the
        # writer's own retries, while new rows keep coming.
        up = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
        migrate(up)
        writer.engine = up
        for _ in range(400):  # 20 s at most
            if writer.healthy and not _spooled_files(tmp_path / "spool"):
                break
            await asyncio.sleep(0.05)
        assert writer.healthy
        writer.record(_row("req-after"))
        await writer.close()
        with up.connect() as connection:
            count = connection.execute(select(func.count()).select_from(request_log)).scalar()
            # Replaying again (as after a crash mid-replay) must not duplicate rows.
        writer._spool_or_hold([_row("req000")])
        writer._replay()
        with up.connect() as connection:
            again = connection.execute(select(func.count()).select_from(request_log)).scalar()
        assert again == count
        return int(count or 0)

    assert asyncio.run(scenario()) == 26


def _spooled_files(spool: Path) -> list[Path]:
    return list(spool.glob("*.jsonl"))


def _row(request_id: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {
        "id": request_id,
        "created_at": now,
        "finished_at": now,
        "route": "chat",
        "status": 200,
        "stream": False,
        "attempts": 1,
        "latency_ms": 1.0,
        "input_tokens": 1,
        "output_tokens": 1,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0,
        "estimated": False,
        "predictions": 0,
        "recovered": False,
    }


def test_rows_carry_the_callers_trace_id(gateway: GatewayFactory, tmp_path: Path) -> None:
    base = gateway()
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    for headers in ({"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}, {}):
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}", **headers},
            json={"model": "local/echo", "messages": USER},
        )
        assert response.status_code == 200
    first, second = rows(tmp_path / ".gateway" / "gateway.db", 2)
    assert first["trace_id"] == trace
    assert len(second["trace_id"]) == 32
    assert second["trace_id"] != trace


def test_a_client_leaving_mid_stream_stops_the_relay_and_is_logged(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # 40 chunks 250 ms apart: ten seconds of stream, of which the client reads the start.
    config = {"model_list": [fake_model(upstream, "slow", "chunks=40,chunk_delay=250")]}
    base = gateway(config)
    body = {"model": "slow", "messages": USER, "stream": True}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers) as raw:
        first = next(raw.iter_bytes())
        assert first.startswith(b"data: ")
    left_at = time.monotonic()

    (row,) = rows(tmp_path / ".gateway" / "gateway.db", 1)
    assert time.monotonic() - left_at < 5.0  # logged long before the stream would have ended
    assert row["error_type"] == "client_disconnected"
    assert row["status"] == 200
    assert row["latency_ms"] < 5000
    assert row["estimated"]  # the upstream never sent its usage: counted from what was relayed


def test_a_client_gone_before_a_json_answer_is_logged_and_charged(
    gateway: GatewayFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    # The answer comes after a second; the client waits a fifth of one. The call runs to
    # its end (the upstream bills it whole, so the key's budget is charged whole), and its
    # row says the client was gone before the answer.
    slow = fake_model(upstream, "slow", "gpt-4o-mini,latency=1000")
    slow["model_info"] = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.001}
    base = gateway({"model_list": [slow, fake_model(upstream, "fast", "gpt-4o-mini")]})
    body = {"model": "slow", "messages": USER}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=0.2)
    answered = httpx.post(
        f"{base}/v1/chat/completions", json={**body, "model": "fast"}, headers=headers
    )
    assert answered.status_code == 200

    left, stayed = rows(tmp_path / ".gateway" / "gateway.db", 2)
    assert (left["status"], left["error_type"]) == (200, "client_disconnected")
    assert left["cost_usd"] > 0
    assert left["output_tokens"] > 0
    assert (stayed["status"], stayed["error_type"]) == (200, None)


def _every_type() -> tuple[dict[str, Any], ...]:
    """Rows that exercise every column type and edge: (full, minimal, expected minimal,
    a replay of full, a spooled row)."""
    started = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    full = {
        "id": "full",
        "created_at": started,
        "finished_at": datetime(2025, 3, 4, 0, 36, 8, 0, tzinfo=UTC),
        "key_id": "k" * 32,
        "team": "équipe \"quoted\" 'single' \\ back\nslash",
        "route": "chat",
        "alias": "gpt-4o-mini 🚀",
        "deployment": "gpt-4o-mini#0",
        "provider": "openai",
        "recovered": True,
        "recovered_from": "gpt-4o-mini#1",
        "prompt_name": "greet",
        "prompt_version": "abc123",
        "status": 502,
        "error_type": "upstream_error",
        "stream": True,
        "attempts": 3,
        "latency_ms": 0.1 + 0.2,
        "upstream_ms": 1e-300,
        "overhead_ms": 123456.78901234567,
        "ttft_ms": 0.0,
        "input_tokens": 2**40,
        "output_tokens": 2**53 + 1,
        "cached_tokens": 7,
        "reasoning_tokens": 9,
        "cost_usd": 1.2345678901234567e-07,
        "estimated": True,
        "price_version": "prices-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "request_body": '{"messages": [{"content": "{}%s%%$1 \\u0041"}]}',
        "response_body": "",
        "model_version": "iris@3",
        "predictions": 2**40,
        "feature_violations": {"petal length (cm)": 2, "sépale": 1},
    }
    minimal = _row("minimal")  # optional columns absent: NULL
    expected_minimal = {**{c.name: None for c in request_log.columns}, **minimal}
    for column in (
        "stream",
        "attempts",
        "cached_tokens",
        "cost_usd",
        "estimated",
        "predictions",
        "recovered",
    ):
        del minimal[column]  # columns with a default in tables.py: the default
    expected_minimal.update(stream=False, attempts=0, cached_tokens=0, cost_usd=0.0, predictions=0)
    expected_minimal.update(estimated=False, recovered=False)
    changed = {**full, "status": 200, "team": "replayed"}
    spooled = {**_row("from-spool"), "ttft_ms": 2.5, "request_body": "spooled body"}
    return full, minimal, expected_minimal, changed, spooled


def _write_every_type(
    engine: Engine, spool: Path
) -> tuple[RequestLogWriter, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Writes _every_type()'s rows the ways they reach the database (a batch with an id
    twice, a replay of a stored id, the spool); returns the writer and what each stored row
    should hold: full, minimal (defaults filled in), spooled."""
    migrate(engine)
    writer = RequestLogWriter(engine, spool)
    spool.mkdir()
    full, minimal, expected_minimal, changed, spooled = _every_type()
    writer._persist([full, minimal, {**full, "status": 201}])  # id twice in a batch
    writer._persist([changed])  # a replay with the id already stored: skipped
    writer._spool_or_hold([changed, spooled])  # through the spool file (JSON lines and back)
    writer._replay()
    assert (writer.written, writer.spooled) == (6, 2)
    assert not list(spool.glob("*.jsonl"))
    return writer, full, expected_minimal, spooled


def test_sqlite_batches_round_trip_every_type_and_stay_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    _, full, expected_minimal, spooled = _write_every_type(engine, tmp_path / "spool")

    with engine.connect() as connection:
        stored = {r["id"]: dict(r) for r in connection.execute(select(request_log)).mappings()}
        raw = connection.exec_driver_sql(
            "SELECT created_at, finished_at FROM request_log WHERE id = 'full'"
        ).one()
    engine.dispose()
    # SQLite keeps no offset: timestamps are stored in UTC, as SQLAlchemy writes them there.
    assert tuple(raw) == ("2025-03-03 23:36:07.123456", "2025-03-04 00:36:08.000000")
    utc = {
        name: full[name].astimezone(UTC).replace(tzinfo=None)
        for name in ("created_at", "finished_at")
    }
    assert sorted(stored) == ["from-spool", "full", "minimal"]
    assert stored["full"] == {**full, **utc}  # the first write wins; every value as given
    naive = {n: expected_minimal[n].replace(tzinfo=None) for n in ("created_at", "finished_at")}
    assert stored["minimal"] == {**expected_minimal, **naive}
    spooled_naive = {n: spooled[n].replace(tzinfo=None) for n in ("created_at", "finished_at")}
    expected_spooled = {**{c.name: None for c in request_log.columns}, **spooled}
    assert stored["from-spool"] == {**expected_spooled, **spooled_naive}


def test_postgres_batches_round_trip_every_type_and_stay_idempotent(
    pg_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.exc import DataError

    engine = make_engine(pg_url)
    writer, full, expected_minimal, spooled = _write_every_type(engine, tmp_path / "spool")

    with engine.connect() as connection:
        found = connection.execute(select(request_log)).mappings()
        stored = {r["id"]: dict(r) for r in found}
    assert sorted(stored) == ["from-spool", "full", "minimal"]
    assert stored["full"] == full  # the first write wins; every value exactly as given
    assert stored["minimal"] == expected_minimal
    assert stored["from-spool"] == {**{c.name: None for c in request_log.columns}, **spooled}
    for row in stored.values():
        assert row["created_at"].tzinfo is not None

    # A bad row is a data error (so the writer isolates and quarantines it).
    with pytest.raises(DataError):
        writer._insert([{**_row("too-long"), "key_id": "k" * 33}])
    engine.dispose()

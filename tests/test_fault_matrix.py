"""The fault matrix: each fault the gateway promises to survive, one row (one test id) each.

A row provokes its fault through real components (the loopback upstream steered by the model
name, a throwaway redis-server, a throwaway PostgreSQL, a `gateway serve` process) and asserts
three things: what the client sees (status, OpenAI's error shape, retry-after, a stream that
ends with an error event rather than a silent end that looks complete), what the call's
request-log row holds (read back from the gateway's database: SQLite, or the throwaway
PostgreSQL of the database rows), and that the gateway stays healthy (/healthz and an ordinary
call still answer, and every call made has its row). docs/reliability.md lists the
outcome of every row.
"""

from __future__ import annotations

import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import orjson
import pytest
import yaml
from sqlalchemy import create_engine, select

from gateway.store.db import make_engine, migrate
from gateway.store.tables import request_log
from tests.conftest import MASTER_KEY, GatewayFactory, free_port, gateway_process, sdk
from tests.fakes.postgres_server import PostgresServer, postgres_server
from tests.fakes.upstream import FakeUpstream

PROMPT = " ".join(f"w{i}" for i in range(40))
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
ANSWER = "echo: " + PROMPT
# The fake counts whitespace-separated words: 40 in, "echo:" and the 40 words out.
PROMPT_TOKENS, ANSWER_TOKENS = 40, 41
# However the gateway counts a prompt it has to estimate, 40 words are at least this many.
MIN_ESTIMATED_PROMPT = 20
INPUT_PRICE, OUTPUT_PRICE = 1e-6, 2e-6
PRICES = {"input_cost_per_token": INPUT_PRICE, "output_cost_per_token": OUTPUT_PRICE}
# Small timeouts keep every row fast: one retry, half a second per attempt.
ROUTER = {"num_retries": 1, "timeout": 0.5, "stream_timeout": 0.3, "max_retry_wait": 0.2}
OVERSIZED = 16_000_000  # bytes of padding in an oversized answer
REFUSED = "<refused>"  # an upstream address where nothing listens
ERROR_KEYS = {"message", "type", "param", "code"}
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass(frozen=True)
class Sees:
    """What the client sees."""

    status: int  # of the response head; a stream that fails after it has begun shows 200
    error: tuple[str, str] | None = None  # (type, code) of the OpenAI error, body or stream event
    retry_after: str | None = None  # the retry-after header exactly; None: absent
    complete: bool = False  # the whole answer arrived (a stream: all its text, no error event)


@dataclass(frozen=True)
class Holds:
    """What the call's request-log row holds; cost is always its tokens at PRICES."""

    status: int
    error_type: str | None
    attempts: int
    deployment: str | None
    # exact (input, output) from the upstream's usage, or "estimated": counted by the gateway
    # (input from the request it sent, output from what it relayed) and flagged as such
    tokens: tuple[int, int] | Literal["estimated"] = (0, 0)
    recovered_from: str | None = None  # the deployment whose stream broke, when recovered


@dataclass(frozen=True)
class Fault:
    name: str
    upstream: str  # directives of the alias under test ("faulty"), or REFUSED
    sees: Sees
    holds: Holds
    calls: tuple[int, ...]  # requests the upstream got, for faulty then each fallback
    stream: bool = False
    fallbacks: tuple[str, ...] = ()  # directives of faulty's fallback aliases, tried in order
    timeout: float | None = None  # faulty's own, for rows whose answer must come through
    # gateway.stream_recovery on for faulty (every deployment supporting assistant prefill)
    recovery: bool = False


def failed(status: int, error: str, attempts: int = 2, deployment: str = "faulty#0") -> Holds:
    """The row of a call that failed before any byte reached the client."""
    return Holds(status, error, attempts, deployment)


def recovered(name: str, upstream: str) -> Fault:
    """A stream that broke midway, continued on faulty's fallback (stream recovery on)."""
    holds = Holds(200, None, 2, "fallback1#1", "estimated", recovered_from="faulty#0")
    return Fault(
        name,
        upstream,
        Sees(200, complete=True),
        holds,
        calls=(1, 1),
        stream=True,
        fallbacks=("gpt-4o-mini",),
        recovery=True,
    )


SERVED = Holds(200, None, 1, "faulty#0", (PROMPT_TOKENS, ANSWER_TOKENS))
SERVED_PADDED = Holds(200, None, 1, "faulty#0", (PROMPT_TOKENS, ANSWER_TOKENS + 1))
UPSTREAM_5XX = ("upstream_error", "bad_gateway")
UNAVAILABLE = ("upstream_error", "service_unavailable")
TIMEOUT = ("timeout_error", "upstream_timeout")

UPSTREAM_FAULTS = [
    Fault(
        "429-retry-after-within-max-retry-wait",
        "status=429,retry_after=0.05",
        Sees(429, ("rate_limit_error", "rate_limit_exceeded"), retry_after="1"),
        failed(429, "rate_limit_error"),
        calls=(2,),
    ),
    Fault(
        # Sitting out 30 s would hold the client: the deployment cools down instead.
        "429-retry-after-beyond-max-retry-wait",
        "status=429,retry_after=30",
        Sees(429, ("rate_limit_error", "rate_limit_exceeded"), retry_after="30"),
        failed(429, "rate_limit_error", attempts=1),
        calls=(1,),
    ),
    Fault(
        "429-without-retry-after",
        "status=429",
        Sees(429, ("rate_limit_error", "rate_limit_exceeded")),
        failed(429, "rate_limit_error"),
        calls=(2,),
    ),
    Fault(
        "500",
        "status=500",
        Sees(502, UPSTREAM_5XX),
        failed(502, "upstream_error"),
        calls=(2,),
    ),
    Fault(
        "503",
        "status=503",
        Sees(503, UNAVAILABLE),
        failed(503, "upstream_error"),
        calls=(2,),
    ),
    Fault(
        "connection-refused",
        REFUSED,
        Sees(503, UNAVAILABLE),
        failed(503, "upstream_error"),
        calls=(0,),
    ),
    Fault(
        "timeout-before-headers",
        "hang",
        Sees(504, TIMEOUT),
        failed(504, "timeout_error"),
        calls=(2,),
    ),
    Fault(
        "timeout-before-headers-stream",
        "hang",
        Sees(504, TIMEOUT),
        failed(504, "timeout_error"),
        calls=(2,),
        stream=True,
    ),
    Fault(
        # The head arrives at once and the body never in time: `timeout` covers both.
        "slow-first-byte",
        "first_byte=5000",
        Sees(504, TIMEOUT),
        failed(504, "timeout_error"),
        calls=(2,),
    ),
    Fault(
        "slow-first-byte-stream",
        "first_byte=5000",
        Sees(504, TIMEOUT),
        failed(504, "timeout_error"),
        calls=(2,),
        stream=True,
    ),
    Fault(
        "slow-first-byte-within-timeout",
        "first_byte=300",
        Sees(200, complete=True),
        SERVED,
        calls=(1,),
        timeout=5,
    ),
    Fault(
        # After the first byte a stream can neither retry nor fall back: it must say it broke.
        "stream-cut",
        "cut=2",
        Sees(200, UPSTREAM_5XX),
        Holds(200, "upstream_error", 1, "faulty#0", "estimated"),
        calls=(1,),
        stream=True,
    ),
    Fault(
        "stream-stall",
        "stall=2",
        Sees(200, TIMEOUT),
        Holds(200, "timeout_error", 1, "faulty#0", "estimated"),
        calls=(1,),
        stream=True,
    ),
    # With gateway.stream_recovery the fallback continues the text the client has.
    recovered("stream-cut-recovered", "cut=2"),
    recovered("stream-stall-recovered", "stall=2"),
    Fault(
        # The continuation cannot be opened: the client gets the break's own error event.
        "stream-cut-recovery-failing",
        "cut=2",
        Sees(200, UPSTREAM_5XX),
        Holds(200, "upstream_error", 3, "faulty#0", "estimated"),
        calls=(1, 2),
        stream=True,
        fallbacks=("status=500",),
        recovery=True,
    ),
    Fault(
        "malformed-json",
        "malformed",
        Sees(502, UPSTREAM_5XX),
        failed(502, "upstream_error"),
        calls=(2,),
    ),
    Fault(
        # The fake sends the malformed event with the first one, so nothing was relayed yet.
        "malformed-stream-event",
        "malformed",
        Sees(502, UPSTREAM_5XX),
        failed(502, "upstream_error"),
        calls=(2,),
        stream=True,
    ),
    Fault(
        "no-usage",
        "no_usage",
        Sees(200, complete=True),
        Holds(200, None, 1, "faulty#0", "estimated"),
        calls=(1,),
        timeout=10,
    ),
    Fault(
        "no-usage-stream",
        "no_usage",
        Sees(200, complete=True),
        Holds(200, None, 1, "faulty#0", "estimated"),
        calls=(1,),
        stream=True,
        timeout=10,
    ),
    Fault(
        "oversized-response",
        f"pad={OVERSIZED}",
        Sees(200, complete=True),
        SERVED_PADDED,
        calls=(1,),
        timeout=10,
    ),
    Fault(
        # One 16 MB event in a stream (a streamed image is one such event).
        "oversized-stream-event",
        f"pad={OVERSIZED},chunks=1",
        Sees(200, complete=True),
        SERVED_PADDED,
        calls=(1,),
        stream=True,
        timeout=10,
    ),
    Fault(
        # The client sees the last alias's error; every alias was tried, each with its retry.
        "every-fallback-failing",
        "status=500",
        Sees(503, UNAVAILABLE),
        failed(503, "upstream_error", attempts=6, deployment="fallback2#2"),
        calls=(2, 2, 0),
        fallbacks=("status=429,retry_after=0.05", REFUSED),
    ),
    Fault(
        "every-fallback-failing-stream",
        "hang",
        Sees(502, UPSTREAM_5XX),
        failed(502, "upstream_error", attempts=4, deployment="fallback1#1"),
        calls=(2, 2),
        stream=True,
        fallbacks=("malformed",),
    ),
]


def row_params(rows: list[Fault]) -> list[Any]:
    params = []
    for row in rows:
        params.append(pytest.param(row, id=row.name))
    return params


# --- helpers: the gateway, the client's view, the request log, the health check ----------------


def unique(directives: str) -> str:
    """The directives, tagged so the shared upstream counts this test's calls apart."""
    return f"{directives},id={uuid.uuid4().hex[:12]}"


def entry(
    upstream: FakeUpstream, alias: str, model: str, timeout: float | None = None
) -> dict[str, Any]:
    api_base = upstream.url
    if model == REFUSED:
        api_base, model = f"http://127.0.0.1:{free_port()}/v1", "gpt-4o-mini"
    params: dict[str, Any] = {"model": f"openai/{model}", "api_base": api_base}
    if timeout is not None:
        params |= {"timeout": timeout, "stream_timeout": timeout}
    return {"model_name": alias, "litellm_params": params, "model_info": PRICES}


def config(
    upstream: FakeUpstream,
    models: dict[str, str],
    timeouts: dict[str, float | None] | None = None,
    **router: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A config serving `models` (alias -> directives) and "healthy"; returns it with the
    model string each alias's deployment sends upstream. Only the faults get the small
    timeouts: a busy machine must not turn the health check into a fault."""
    sent = {alias: unique(d) if d != REFUSED else REFUSED for alias, d in models.items()}
    sent["healthy"] = unique("gpt-4o-mini")
    timeouts = {**(timeouts or {}), "healthy": 30.0}
    entries = [entry(upstream, a, model, timeouts.get(a)) for a, model in sent.items()]
    return {"model_list": entries, "router_settings": {**ROUTER, **router}}, sent


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database to start each gateway from (migrating costs ~0.5 s)."""
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def connections() -> Iterator[Any]:
    """One HTTP client under every SDK client of the module (building one costs ~0.3 s)."""
    with openai.DefaultHttpxClient() as client:
        yield client


@pytest.fixture
def serve(gateway: GatewayFactory, migrated: Path, tmp_path: Path, connections: Any) -> Any:
    """Starts a gateway on a copy of the migrated database; returns its URL, its database and
    an SDK client for it."""

    def start(settings: dict[str, Any], **options: Any) -> tuple[str, Path, openai.OpenAI]:
        data_dir = tmp_path / f"data-{uuid.uuid4().hex[:6]}"
        data_dir.mkdir()
        shutil.copy(migrated, data_dir / "gateway.db")
        # No prompts to sync (the project's own would cost each start ~0.3 s).
        options.setdefault("prompts_dir", tmp_path / "no-prompts")
        base = gateway(settings, data_dir=data_dir, **options)
        return base, data_dir / "gateway.db", sdk(base, http_client=connections)

    return start


def rows_of(db: Path | str) -> dict[str, dict[str, Any]]:
    """The request log of `db`: a SQLite file, or a database URL."""
    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            return {r["id"]: dict(r) for r in connection.execute(select(request_log)).mappings()}
    finally:
        engine.dispose()


def logged(db: Path | str, *request_ids: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """Every row of the database once those of `request_ids` are there (the background writer
    flushes every 0.25 s); fails when they are not within the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_of(db)
        if all(request_id in rows for request_id in request_ids):
            return rows
        if time.monotonic() > deadline:
            missing = [r for r in request_ids if r not in rows]
            raise AssertionError(f"no request-log row for {missing} after {timeout} s")
        time.sleep(0.05)


def wait_until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


@dataclass
class Outcome:
    """What one client call saw."""

    status: int
    request_id: str
    retry_after: str | None
    error: dict[str, Any] | None  # the OpenAI error object: the body's, or the stream event's
    content: str | None  # the answer, when it arrived whole


def ask(client: openai.OpenAI, alias: str = "faulty", stream: bool = False) -> Outcome:
    create = client.chat.completions.with_raw_response.create
    try:
        raw = create(model=alias, messages=MESSAGES, stream=stream)
    except openai.APIStatusError as exc:
        headers = exc.response.headers
        error = exc.body if isinstance(exc.body, dict) else None
        request_id, retry_after = headers["x-gateway-request-id"], headers.get("retry-after")
        return Outcome(exc.status_code, request_id, retry_after, error, None)
    request_id, retry_after = raw.headers["x-gateway-request-id"], raw.headers.get("retry-after")
    if not stream:
        content = raw.parse().choices[0].message.content
        return Outcome(raw.status_code, request_id, retry_after, None, content)
    pieces = []
    try:
        for chunk in raw.parse():
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
    except openai.APIError as exc:
        # An error event carries an OpenAI error body; a broken connection would carry none.
        error = exc.body if isinstance(exc.body, dict) else {"broken": exc.message}
        return Outcome(raw.status_code, request_id, retry_after, error, None)
    # The SDK stops at [DONE]; a stream that ended without it shows as a short answer.
    return Outcome(raw.status_code, request_id, retry_after, None, "".join(pieces))


def check_sees(outcome: Outcome, sees: Sees, expected_answer: str) -> None:
    assert outcome.status == sees.status
    assert outcome.retry_after == sees.retry_after
    if sees.error is None:
        assert outcome.error is None
    else:
        assert outcome.error is not None
        assert set(outcome.error) == ERROR_KEYS, outcome.error  # OpenAI's shape, nothing else
        assert (outcome.error["type"], outcome.error["code"]) == sees.error
        assert outcome.error["message"]
    if sees.complete:
        assert outcome.content == expected_answer
    else:
        assert outcome.content is None


def row_problems(row: dict[str, Any], holds: Holds) -> dict[str, str]:
    """Field -> what is wrong with it; empty when the row holds what it should."""
    problems: dict[str, str] = {}

    def expect(field: str, ok: bool, wanted: str) -> None:
        if not ok:
            problems[field] = f"{field} is {row[field]!r}, expected {wanted}"

    for field in ("status", "error_type", "attempts", "deployment", "recovered_from"):
        wanted = getattr(holds, field)
        expect(field, row[field] == wanted, repr(wanted))
    recovered = holds.recovered_from is not None
    expect("recovered", bool(row["recovered"]) is recovered, repr(recovered))
    if holds.tokens == "estimated":
        expect("estimated", bool(row["estimated"]), "True")
        expect(
            "input_tokens",
            row["input_tokens"] >= MIN_ESTIMATED_PROMPT,
            f">= {MIN_ESTIMATED_PROMPT} (counted from the request sent upstream)",
        )
        expect("output_tokens", row["output_tokens"] >= 1, ">= 1 (counted from what was relayed)")
    else:
        expect("estimated", not row["estimated"], "False")
        expect("input_tokens", row["input_tokens"] == holds.tokens[0], str(holds.tokens[0]))
        expect("output_tokens", row["output_tokens"] == holds.tokens[1], str(holds.tokens[1]))
    cost = row["input_tokens"] * INPUT_PRICE + row["output_tokens"] * OUTPUT_PRICE
    expect("cost_usd", row["cost_usd"] == pytest.approx(cost), f"{cost} (its tokens, priced)")
    return problems


def settle(problems: dict[str, str]) -> None:
    """Raises for a row that does not hold what it should, naming every field that differs."""
    assert not problems, "; ".join(problems.values())


def check_healthy(
    base: str, client: openai.OpenAI, db: Path | str, sent: dict[str, str], calls_made: int
) -> None:
    """/healthz answers, an ordinary call is served and logged, and no call lost its row."""
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    outcome = ask(client, "healthy")
    assert (outcome.status, outcome.content) == (200, ANSWER)
    rows = logged(db, outcome.request_id)
    healthy = f"healthy#{list(sent).index('healthy')}"
    served = Holds(200, None, 1, healthy, (PROMPT_TOKENS, ANSWER_TOKENS))
    settle(row_problems(rows[outcome.request_id], served))
    assert len(rows) == calls_made + 1, "every call made has exactly one row"


# --- the rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", row_params(UPSTREAM_FAULTS))
def test_upstream_fault(fault: Fault, serve: Any, upstream: FakeUpstream) -> None:
    aliases = ["faulty", *(f"fallback{n}" for n in range(1, len(fault.fallbacks) + 1))]
    models = dict(zip(aliases, [fault.upstream, *fault.fallbacks], strict=True))
    fallbacks = [{"faulty": aliases[1:]}] if fault.fallbacks else []
    settings, sent = config(upstream, models, {"faulty": fault.timeout}, fallbacks=fallbacks)
    if fault.recovery:
        settings["gateway"] = {"stream_recovery": {"faulty": True}}
        for deployment in settings["model_list"]:
            deployment["model_info"] = {**PRICES, "supports_assistant_prefill": True}
    base, db, client = serve(settings)
    padded = ANSWER + " " + "x" * OVERSIZED if "pad=" in fault.upstream else ANSWER

    outcome = ask(client, stream=fault.stream)

    check_sees(outcome, fault.sees, padded)
    assert tuple(upstream.calls(sent[a]) if sent[a] != REFUSED else 0 for a in aliases) == (
        fault.calls
    )
    row = logged(db, outcome.request_id)[outcome.request_id]
    problems = row_problems(row, fault.holds)
    assert row["stream"] == fault.stream
    check_healthy(base, client, db, sent, calls_made=1)
    settle(problems)


def test_client_disconnect_mid_stream(serve: Any, upstream: FakeUpstream) -> None:
    """The client reads the first words and leaves: the relay stops, the upstream call is
    abandoned, and the row bills the prompt it sent and what the upstream produced so far."""
    settings, sent = config(upstream, {"faulty": "chunks=40,chunk_delay=50"}, {"faulty": 10})
    base, db, client = serve(settings)
    body = {"model": "faulty", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=10
    ) as response:
        request_id = response.headers["x-gateway-request-id"]
        for line in response.iter_lines():  # up to the first event with some text
            if line.startswith("data: ") and orjson.loads(line[6:])["choices"][0]["delta"].get(
                "content"
            ):
                break
    wait_until(lambda: upstream.in_flight(sent["faulty"]) == 0, "the upstream call abandoned")

    row = logged(db, request_id)[request_id]
    holds = Holds(200, "client_disconnected", 1, "faulty#0", "estimated")
    problems = row_problems(row, holds)
    check_healthy(base, client, db, sent, calls_made=1)
    settle(problems)


def test_client_gives_up_before_a_json_answer(serve: Any, upstream: FakeUpstream) -> None:
    """A client that times out while a JSON answer is on its way: the call runs to its end at
    the upstream (which bills it whole, so the key is charged whole), and its row says the
    client was gone when the answer came."""
    settings, sent = config(upstream, {"faulty": "latency=600"}, {"faulty": 10})
    base, db, client = serve(settings)
    body = {"model": "faulty", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=0.2)
    wait_until(lambda: upstream.in_flight(sent["faulty"]) == 0, "the upstream call finished")

    wait_until(lambda: len(rows_of(db)) == 1, "the call's row")  # its id never reached the client
    (row,) = rows_of(db).values()
    gone = Holds(200, "client_disconnected", 1, "faulty#0", (PROMPT_TOKENS, ANSWER_TOKENS))
    settle(row_problems(row, gone))
    check_healthy(base, client, db, sent, calls_made=1)


# --- Redis stopped -----------------------------------------------------------------------------


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def throwaway_redis(port: int, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own on `port` (never the machine's), stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; the Redis rows need it")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"],  # nothing persisted
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _redis_answers(port), f"redis-server on port {port} answering")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _key_call(base: str, key: str) -> tuple[int, str, dict[str, Any]]:
    response = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "healthy", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code, response.headers["x-gateway-request-id"], response.json()


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_redis_stopped(fail_open: bool, serve: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Redis holds the limits of a key with an RPM limit; it stops, then comes back. Fail-closed
    (the default) refuses that key's calls with 503 naming the way out; fail-open serves them
    unmetered. Calls that meter nothing (the master key's) are served either way."""
    port = free_port()
    settings, sent = config(upstream, {})
    calls: dict[str, int] = {}  # request id -> status the client saw
    with throwaway_redis(port, tmp_path) as redis_server:
        base, db, client = serve(
            settings,
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_prefix=f"fm{uuid.uuid4().hex[:6]}:",
            redis_fail_open=fail_open,
            meter_lease_calls=1,  # every call admitted in Redis: no lease hides the outage
        )
        created = httpx.post(
            f"{base}/v1/keys", json={"name": "limited", "rpm_limit": 10_000}, headers=HEADERS
        )
        key = created.json()["key"]
        status, request_id, _ = _key_call(base, key)
        assert status == 200
        calls[request_id] = status

        redis_server.terminate()
        redis_server.wait(timeout=10)
        for _ in range(3):
            status, request_id, reply = _key_call(base, key)
            calls[request_id] = status
            if fail_open:
                assert status == 200
            else:
                assert status == 503
                assert set(reply["error"]) == ERROR_KEYS
                assert (reply["error"]["type"], reply["error"]["code"]) == (
                    "server_error",
                    "meter_unavailable",
                )
                assert "GATEWAY_REDIS_FAIL_OPEN" in reply["error"]["message"]
                assert str(port) not in reply["error"]["message"]  # no address for callers

        check_healthy(base, client, db, sent, calls_made=len(calls))  # master key: no Redis
        calls["healthy"] = 200

    with throwaway_redis(port, tmp_path):  # back on the same address: the key is served again

        def served() -> bool:
            status, request_id, _ = _key_call(base, key)
            calls[request_id] = status
            return status == 200

        wait_until(served, "the limited key served again after Redis came back")

    rows = logged(db, *(r for r in calls if r != "healthy"))
    assert len(rows) == len(calls), "every call made has exactly one row"
    for request_id, status in calls.items():
        if request_id != "healthy":
            assert rows[request_id]["status"] == status
    refused = [rows[r] for r, status in calls.items() if status == 503]
    assert bool(refused) != fail_open
    for row in refused:  # refused before any upstream call: nothing spent, nothing billed
        settle(row_problems(row, Holds(503, "server_error", 0, None)))


# --- SIGTERM under load ------------------------------------------------------------------------


def test_sigterm_under_load(tmp_path: Path, upstream: FakeUpstream) -> None:
    """`gateway serve` gets SIGTERM with calls in flight and more arriving: the calls in flight
    are answered (streams to their [DONE]), every answered call has its row once the process
    has exited, and it exits within a bounded time."""
    settings, sent = config(
        upstream,
        {"slow": "latency=400", "slow-stream": "chunks=8,chunk_delay=50"},
        {"slow": 30, "slow-stream": 30},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(settings))
    env = {"GATEWAY_CONFIG": str(path), "GATEWAY_MASTER_KEY": MASTER_KEY}
    data_dir = tmp_path / "data"
    answered: list[str] = []  # request ids of the 200s the clients got
    broken_streams: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(stream: bool) -> None:
        body = {"model": "slow-stream" if stream else "slow", "messages": MESSAGES}
        with httpx.Client(headers=HEADERS, timeout=30) as http:
            while not stop.is_set():
                try:
                    if stream:
                        with http.stream(
                            "POST", f"{base}/v1/chat/completions", json={**body, "stream": True}
                        ) as response:
                            text = response.read()
                    else:
                        response = http.post(f"{base}/v1/chat/completions", json=body)
                        text = b""
                except httpx.TransportError:
                    return  # the gateway stopped taking calls
                if response.status_code == 200:
                    with lock:
                        answered.append(response.headers["x-gateway-request-id"])
                        if stream and not text.endswith(b"data: [DONE]\n\n"):
                            broken_streams.append(response.headers["x-gateway-request-id"])

    with gateway_process(data_dir, env=env) as (base, process):
        pool = ThreadPoolExecutor(max_workers=24)
        try:
            clients = [pool.submit(client, index % 4 == 0) for index in range(24)]
            wait_until(
                lambda: upstream.in_flight(sent["slow"]) >= 12, "12 calls in flight upstream"
            )
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        finally:
            stop.set()
            pool.shutdown()
        for finished in clients:
            finished.result()  # a client that failed for another reason fails the test
        # uvicorn stops gracefully, then re-raises SIGTERM so supervisors see the signal.
        assert code in (0, -signal.SIGTERM)

    assert len(answered) >= 12
    assert broken_streams == []
    rows = rows_of(data_dir / "gateway.db")
    lost = [request_id for request_id in answered if request_id not in rows]
    assert lost == [], f"{len(lost)} of {len(answered)} answered calls have no row"
    assert {row["status"] for row in rows.values()} == {200}


# --- database faults ---------------------------------------------------------------------------

# A throwaway PostgreSQL of each row's own (never the machine's): SQLite has no faithful
# equivalent, its "server" is the file. The request path needs no database, so calls go on
# being answered while it is down; their rows wait in the spool (or in memory) and arrive
# once it is back.
DATABASE_TIMEOUT = 1.0  # GATEWAY_DATABASE_TIMEOUT: a silent database is given up on in 1 s
ROWS_DEADLINE = 30.0  # how long the rows of an outage may take to arrive once it is over


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL; rows list it before `serve`, so it outlives their gateway."""
    with postgres_server() as server:
        yield server


class Traffic:
    """Clients calling "healthy" in the background until the block ends; keeps, per request
    id, the status each call saw. A client that fails for any reason fails the test."""

    def __init__(self, client: openai.OpenAI, clients: int = 2) -> None:
        self.client = client
        self.seen: dict[str, int] = {}
        self.answers: set[str | None] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(clients)
        self._clients = [self._pool.submit(self._call) for _ in range(clients)]

    def _call(self) -> None:
        while not self._stop.is_set():
            outcome = ask(self.client, "healthy")
            with self._lock:
                self.seen[outcome.request_id] = outcome.status
                self.answers.add(outcome.content)

    def more(self, calls: int, what: str) -> None:
        """Waits until `calls` more calls have been answered."""
        target = len(self.seen) + calls

        def answered() -> bool:
            for client in self._clients:
                if client.done():
                    client.result()  # raises what stopped it
            return len(self.seen) >= target

        wait_until(answered, f"{calls} calls answered {what}", timeout=ROWS_DEADLINE)

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._pool.shutdown()
        for client in self._clients:
            client.result()


def readiness(base: str) -> tuple[int, dict[str, Any]]:
    # The client's timeout is the bound: readiness must answer, never hang on the database.
    response = httpx.get(f"{base}/readyz", timeout=ROWS_DEADLINE)
    return response.status_code, response.json()


def ready_becomes(base: str, status: int, what: str) -> dict[str, Any]:
    """The /readyz body once it answers `status` (it caches its check for a second)."""
    seen: list[dict[str, Any]] = []

    def answers() -> bool:
        code, body = readiness(base)
        seen[:] = [body]
        return code == status

    wait_until(answers, what, timeout=ROWS_DEADLINE)
    return seen[0]


def check_admin_unavailable(base: str) -> None:
    """An admin route that needs the database answers 503 database_unavailable, in bounded
    time (the client's timeout: a hang fails the row)."""
    keys = httpx.get(f"{base}/v1/keys", headers=HEADERS, timeout=ROWS_DEADLINE)
    assert keys.status_code == 503, keys.text
    error = keys.json()["error"]
    assert set(error) == ERROR_KEYS
    assert (error["type"], error["code"]) == ("server_error", "database_unavailable")


def check_every_call_logged(
    url: str, traffic: Traffic, sent: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Every call the clients made was answered 200 with the whole answer, and its row, with
    that status and the upstream's usage, is in the database: none lost, none twice."""
    assert set(traffic.seen.values()) == {200}
    assert traffic.answers == {ANSWER}
    rows = logged(url, *traffic.seen, timeout=ROWS_DEADLINE)
    assert len(rows) == len(traffic.seen), "exactly one row per call"
    healthy = f"healthy#{list(sent).index('healthy')}"
    served = Holds(200, None, 1, healthy, (PROMPT_TOKENS, ANSWER_TOKENS))
    problems: dict[str, str] = {}
    for request_id in traffic.seen:
        problems |= {
            f"{request_id}: {k}": v for k, v in row_problems(rows[request_id], served).items()
        }
    settle(problems)
    return rows


@dataclass(frozen=True)
class Outage:
    name: str
    begin: str  # the PostgresServer method that takes it down
    end: str  # the one that brings it back
    readiness: str  # how /readyz words the database's problem


DATABASE_OUTAGES = [
    Outage("database-refusing-connections", "stop", "start", "unreachable ("),
    Outage("database-hanging", "pause", "resume", f"did not answer within {DATABASE_TIMEOUT:g} s"),
]


@pytest.mark.parametrize("outage", [pytest.param(o, id=o.name) for o in DATABASE_OUTAGES])
def test_database_down(
    outage: Outage, pg: PostgresServer, serve: Any, upstream: FakeUpstream
) -> None:
    """The gateway's PostgreSQL goes down mid-traffic: stopped (connections refused) or
    SIGSTOPped (connections accepted, nothing ever answered, as a hung host). Calls go on
    being answered; /readyz says not ready, naming the database; an admin route answers 503
    in bounded time; the rows are spooled. Once the database is back, /readyz is ready
    again and every call's row is in the database (replayed from the spool), exactly once."""
    settings, sent = config(upstream, {})
    base, sqlite_file, client = serve(
        settings, database_url=pg.url, database_timeout=DATABASE_TIMEOUT
    )
    spool = sqlite_file.parent / "spool"
    with Traffic(client) as traffic:
        traffic.more(5, "before the outage")
        getattr(pg, outage.begin)()
        try:
            body = ready_becomes(base, 503, f"/readyz not ready with the database {outage.begin}")
            assert body["status"] == "not ready"
            assert body["checks"]["database"].startswith(outage.readiness), body
            traffic.more(20, "while the database is down")
            check_admin_unavailable(base)
            wait_until(lambda: any(spool.glob("*.jsonl")), "rows spooled", ROWS_DEADLINE)
        finally:
            getattr(pg, outage.end)()
        body = ready_becomes(base, 200, "/readyz ready again")
        assert body["checks"]["database"] == "ok"
        traffic.more(5, "after the outage")

    check_every_call_logged(pg.url, traffic, sent)
    wait_until(lambda: not any(spool.glob("*.jsonl")), "the spool replayed", ROWS_DEADLINE)
    assert not any(spool.glob("*.tmp"))
    assert readiness(base)[1]["request_log"] == {
        "database": "ok",
        "held_in_memory": 0,
        "dropped": 0,
        "quarantined": 0,
    }
    check_healthy(base, client, pg.url, sent, calls_made=len(traffic.seen))


def _read_lines(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


def test_disk_full_during_a_database_outage(
    pg: PostgresServer, tmp_path: Path, upstream: FakeUpstream, connections: Any
) -> None:
    """The disk fills up, then the database stops, mid-traffic. The spool cannot take a byte,
    so rows wait in memory (well under the default bound of 100,000 rows), and the gateway
    says so in its log; calls go on being answered. The disk frees up: the rows are spooled.
    The database returns: every row arrives, none twice, no partial file left.

    A full disk, unprivileged: the whole gateway (`gateway serve`, in its own process) gets
    RLIMIT_FSIZE 0 through prlimit(2), allowed on a process of one's own user, so every write
    to a regular file fails with EFBIG (Python ignores SIGXFSZ, which would otherwise kill
    it); raising it back is the disk freeing up. Its output goes to a pipe, which the limit
    does not cover."""
    settings, sent = config(upstream, {})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(settings))
    env = {
        "GATEWAY_CONFIG": str(path),
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_DATABASE_URL": pg.url,
        "GATEWAY_DATABASE_TIMEOUT": str(DATABASE_TIMEOUT),
        "GATEWAY_PROMPTS_DIR": str(tmp_path / "no-prompts"),
    }
    data_dir = tmp_path / "data"
    spool = data_dir / "spool"
    output: list[str] = []
    with gateway_process(data_dir, env=env) as (base, process):
        assert process.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(process.stdout, output), daemon=True)
        reader.start()
        client = sdk(base, http_client=connections)
        space = resource.prlimit(process.pid, resource.RLIMIT_FSIZE)
        with Traffic(client) as traffic:
            traffic.more(5, "before the outage")
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (0, space[1]))  # disk full
            pg.stop()
            try:
                wait_until(
                    lambda: readiness(base)[1]["request_log"]["held_in_memory"] >= 20,
                    "rows held in memory",
                    ROWS_DEADLINE,
                )
                traffic.more(20, "while the database and the disk are down")
                code, body = readiness(base)
                assert code == 503
                assert body["checks"]["database"].startswith("unreachable ("), body
                assert body["request_log"]["dropped"] == 0
                assert not any(spool.glob("*.jsonl")), "a spool file written on a full disk"
            finally:
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, space)  # space again
            wait_until(
                lambda: (
                    readiness(base)[1]["request_log"]["held_in_memory"] == 0
                    and any(spool.glob("*.jsonl"))
                ),
                "the held rows spooled once the disk has space",
                ROWS_DEADLINE,
            )
            traffic.more(5, "with space on the disk, the database still down")
            pg.start()
            ready_becomes(base, 200, "/readyz ready again")
            traffic.more(5, "after the outage")

        check_every_call_logged(pg.url, traffic, sent)
        wait_until(lambda: not any(spool.glob("*.jsonl")), "the spool replayed", ROWS_DEADLINE)
        assert not any(spool.glob("*.tmp")), "a partial spool file left behind"
        assert readiness(base)[1]["request_log"] == {
            "database": "ok",
            "held_in_memory": 0,
            "dropped": 0,
            "quarantined": 0,
        }
        check_healthy(base, client, pg.url, sent, calls_made=len(traffic.seen))
    reader.join(timeout=10)
    log = "".join(output)
    assert "cannot write the spool" in log, log  # said loudly
    assert "the spool is writable again" in log, log
    assert "DROPPED" not in log, log
    assert "LOST" not in log, log


# --- supporting: the oversized-stream fix -------------------------------------------------------


async def test_stream_events_survive_any_read_boundary() -> None:
    """However the upstream's bytes are split into reads (one at a time, a separator across two
    reads, CRLF framing), the provider yields exactly the events sent; it only searches the
    new bytes of each read, which made one 16 MB event linear instead of quadratic."""
    from gateway.providers.base import Deployment
    from gateway.providers.openai_compat import OpenAICompatibleProvider

    events = [b'data: {"a": 1}', b'data: {"b": "' + b"x" * 300 + b'"}', b"data: [DONE]"]
    deployment = Deployment("d#0", "d", "openai/m", "openai", "m")

    class Reads:
        def __init__(self, data: bytes, sizes: Iterator[int]) -> None:
            self.data, self.sizes = data, sizes

        async def chunk(self) -> bytes:
            size = next(self.sizes)
            piece, self.data = self.data[:size], self.data[size:]
            return piece

        def close(self) -> None:
            pass

    def sizes(*pattern: int) -> Iterator[int]:
        while True:
            yield from pattern

    for separator in (b"\n\n", b"\r\n\r\n"):
        wire = b"".join(event + separator for event in events)
        for pattern in [(1,), (2,), (3,), (5, 1), (7, 2, 1), (len(wire),)]:
            reads = Reads(wire, sizes(*pattern))
            seen = [
                event
                async for batch in OpenAICompatibleProvider()._events(reads, deployment)  # type: ignore[arg-type]
                for event in batch
            ]
            assert seen == [event + b"\n\n" for event in events], (separator, pattern)

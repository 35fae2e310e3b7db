"""The fault matrix: each fault the gateway promises to survive, one row (one test id) each.

A row provokes its fault through real components (the loopback upstream steered by the model
name, a throwaway redis-server, a `gateway serve` process) and asserts three things: what the
client sees (status, OpenAI's error shape, retry-after, a stream that ends with an error event
rather than a silent end that looks complete), what the call's request-log row holds (read
back from the gateway's SQLite database), and that the gateway stays healthy (/healthz and an
ordinary call still answer, and every call made has its row). docs/reliability.md lists the
outcome of every row.
"""

from __future__ import annotations

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


def failed(status: int, error: str, attempts: int = 2, deployment: str = "faulty#0") -> Holds:
    """The row of a call that failed before any byte reached the client."""
    return Holds(status, error, attempts, deployment)


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


def rows_of(db: Path) -> dict[str, dict[str, Any]]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            return {r["id"]: dict(r) for r in connection.execute(select(request_log)).mappings()}
    finally:
        engine.dispose()


def logged(db: Path, *request_ids: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
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

    for field in ("status", "error_type", "attempts", "deployment"):
        wanted = getattr(holds, field)
        expect(field, row[field] == wanted, repr(wanted))
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
    base: str, client: openai.OpenAI, db: Path, sent: dict[str, str], calls_made: int
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
    """A client that times out while a JSON answer is on its way: the gateway does not notice
    (nothing tells a server a silent client left before the response), so the call runs to
    its end at the upstream, is billed what the upstream produced, and its row says 200."""
    settings, sent = config(upstream, {"faulty": "latency=600"}, {"faulty": 10})
    base, db, client = serve(settings)
    body = {"model": "faulty", "messages": MESSAGES}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=0.2)
    wait_until(lambda: upstream.in_flight(sent["faulty"]) == 0, "the upstream call finished")

    wait_until(lambda: len(rows_of(db)) == 1, "the call's row")  # its id never reached the client
    (row,) = rows_of(db).values()
    settle(row_problems(row, SERVED))
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
                assert reply["error"]["code"] == "meter_unavailable"
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


# --- database faults (pending) -----------------------------------------------------------------

# Provoked with the throwaway PostgreSQL of branch `durability` (tests/fakes/postgres_server.py,
# issue 12 items 5 and 6); the lead wires them in when that branch is merged. SQLite has no
# faithful equivalent: its "server" is the file, and a locked file only waits out the
# 30-second busy timeout.
PENDING_DATABASE_FAULTS = [
    "database-refusing-connections",
    "database-hanging",
    "disk-full-during-an-outage",
]


@pytest.mark.parametrize("fault", PENDING_DATABASE_FAULTS)
def test_database_fault(fault: str) -> None:
    pytest.skip(
        f"pending: {fault} needs the throwaway PostgreSQL of branch durability "
        "(tests/fakes/postgres_server.py, issue 12 items 5-6)"
    )


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

"""The request log read back: `GET /v1/logs` (filters, keyset pages, one row in full) and
`gateway logs` (a table, `--follow`, `show ID`) on SQLite and PostgreSQL; the demo price of
`local/echo` in the shipped config; spend, budget and limits in `keys list`."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine, inspect

from gateway.core.config import load_config
from gateway.observability.log_query import Follower, LogFilter, list_logs
from gateway.observability.request_log import RequestLogWriter
from tests.conftest import MASTER_KEY, ROOT, GatewayFactory, sdk

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SHIPPED = ROOT / "config" / "gateway.yaml"
# The documented demo price of local/echo: $1 per million input tokens, $2 per million output.
DEMO_INPUT, DEMO_OUTPUT = 1e-6, 2e-6
GREET = """---
model: local/echo
input:
  schema:
    name: string
---
{{role "user"}}
Hello {{name}}
"""


def shipped_models() -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = yaml.safe_load(SHIPPED.read_text())["model_list"]
    return models


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The database URL the gateway and the CLI share (None: SQLite in the data dir)."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def serve(gateway: GatewayFactory, tmp_path: Path, database: str | None) -> str:
    prompts = tmp_path / "prompts"
    prompts.mkdir(exist_ok=True)
    (prompts / "greet.prompt").write_text(GREET)
    settings: dict[str, Any] = {"prompts_dir": prompts}
    if database is not None:
        settings["database_url"] = database
    return gateway({"model_list": shipped_models()}, **settings)


def make_key(base: str, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/keys", json=fields, headers=ADMIN)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def chat(base: str, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def get(base: str, path: str, key: str = MASTER_KEY, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{base}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def logs(base: str, key: str = MASTER_KEY, **params: Any) -> dict[str, Any]:
    response = get(base, "/v1/logs", key, **params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [row["id"] for row in page["data"]]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class Traffic:
    """Six calls from three keys: successes, a prompt call, a 404 and a 400, in this order."""

    def __init__(self, base: str) -> None:
        self.alpha = make_key(base, name="alpha", team="a", log_bodies=True)
        self.beta = make_key(base, name="beta", team="b")
        alpha, beta = self.alpha["key"], self.beta["key"]
        calls = [
            chat(base, MASTER_KEY, model="local/echo", messages=user("one")),
            chat(base, alpha, model="local/echo", messages=user("two three")),
            chat(
                base,
                alpha,
                model="prompt",
                messages=[],
                prompt={"name": "greet", "variables": {"name": "ana"}},
            ),
            chat(base, beta, model="local/echo", messages=user("four")),
            chat(base, alpha, model="missing", messages=user("five")),
            chat(base, beta, model="local/echo", messages=user("six"), temperature=5),
        ]
        assert [r.status_code for r in calls] == [200, 200, 200, 200, 404, 400]
        self.ids = [r.headers["x-gateway-request-id"] for r in calls]
        self.prompt_version = calls[2].headers["x-gateway-prompt"].split("@", 1)[1]

    def picked(self, *positions: int) -> list[str]:
        """The ids of the calls at these positions (1-based), newest first as listed."""
        return [self.ids[p - 1] for p in sorted(positions, reverse=True)]


def test_logs_api_filters_pages_and_shows_one_row(
    database: str | None, gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = serve(gateway, tmp_path, database)
    traffic = Traffic(base)

    everything = logs(base)
    assert everything["object"] == "list"
    assert ids(everything) == traffic.picked(1, 2, 3, 4, 5, 6)
    assert everything["has_more"] is False
    assert everything["next"] is None
    first = everything["data"][-1]
    assert first["key_id"] == "master"
    assert first["model"] == "local/echo"
    assert first["status"] == 200
    assert first["input_tokens"] == 1
    assert first["output_tokens"] == 1
    assert first["cost_usd"] == pytest.approx(DEMO_INPUT + DEMO_OUTPUT)
    assert "request_body" not in first
    assert "response_body" not in first
    datetime.fromisoformat(first["created_at"])

    alpha, beta = traffic.alpha["id"], traffic.beta["id"]
    assert ids(logs(base, key_id=alpha)) == traffic.picked(2, 3, 5)
    assert ids(logs(base, team="b")) == traffic.picked(4, 6)
    assert ids(logs(base, model="missing")) == traffic.picked(5)
    assert ids(logs(base, prompt="greet")) == traffic.picked(3)
    assert ids(logs(base, prompt=f"greet@{traffic.prompt_version}")) == traffic.picked(3)
    assert ids(logs(base, prompt="greet@000000000000")) == []
    assert ids(logs(base, status="404")) == traffic.picked(5)
    assert ids(logs(base, status="4xx")) == traffic.picked(5, 6)
    assert ids(logs(base, status="2xx")) == traffic.picked(1, 2, 3, 4)
    assert ids(logs(base, error="true")) == traffic.picked(5, 6)
    assert ids(logs(base, error="false")) == traffic.picked(1, 2, 3, 4)
    assert ids(logs(base, key_id=alpha, error="true")) == traffic.picked(5)
    third = next(r for r in everything["data"] if r["id"] == traffic.ids[2])
    assert third["prompt_name"] == "greet"
    assert third["prompt_version"] == traffic.prompt_version
    assert ids(logs(base, since=third["created_at"])) == traffic.picked(3, 4, 5, 6)
    assert ids(logs(base, until=third["created_at"])) == traffic.picked(1, 2)  # until: excluded
    assert ids(logs(base, since="2000-01-01", until="2000-01-02")) == []

    # Keyset pages: every row once, newest first, whatever arrives meanwhile.
    seen: list[str] = []
    page = logs(base, limit=4)
    assert page["has_more"] is True
    while True:
        seen += ids(page)
        if not page["has_more"]:
            assert page["next"] is None
            break
        chat(base, MASTER_KEY, model="local/echo", messages=user("late"))  # newer: not in these
        page = logs(base, limit=4, after=page["next"])
    assert seen == traffic.picked(1, 2, 3, 4, 5, 6)
    filtered = logs(base, limit=1, key_id=alpha)
    assert ids(logs(base, limit=5, key_id=alpha, after=filtered["next"])) == traffic.picked(2, 3)

    # One row in full, with the bodies the key asked to log (redacted as they were stored).
    shown = get(base, f"/v1/logs/{traffic.ids[1]}")
    assert shown.status_code == 200, shown.text
    row = shown.json()
    assert row["id"] == traffic.ids[1]
    assert "two three" in row["request_body"]
    assert "two three" in row["response_body"]
    unlogged = get(base, f"/v1/logs/{traffic.ids[0]}").json()
    assert unlogged["request_body"] is None  # the master key's calls log no bodies by default
    missing = get(base, "/v1/logs/req_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "id"

    # A virtual key reads its own rows only; another key's are not there for it.
    own = logs(base, traffic.alpha["key"])
    assert ids(own) == traffic.picked(2, 3, 5)
    assert ids(logs(base, traffic.alpha["key"], key_id=alpha, status="4xx")) == traffic.picked(5)
    other = get(base, "/v1/logs", traffic.alpha["key"], key_id=beta)
    assert other.status_code == 403
    assert other.json()["error"]["param"] == "key_id"
    assert get(base, f"/v1/logs/{traffic.ids[3]}", traffic.alpha["key"]).status_code == 404
    assert get(base, f"/v1/logs/{traffic.ids[1]}", traffic.alpha["key"]).status_code == 200
    assert httpx.get(f"{base}/v1/logs").status_code == 401


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "many"),
        ("status", "abc"),
        ("status", "6xx"),
        ("status", "99"),
        ("error", "maybe"),
        ("since", "yesterday"),
        ("until", "2026-13-01"),
        ("since", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
        ("after", "not-a-cursor"),
        ("after", "eyJub3QiOiAiYSBjdXJzb3IifQ"),  # base64 JSON, but not one of ours
        ("prompt", "@abc"),
    ],
)
def test_bad_log_filters_are_400_naming_the_parameter(
    gateway: GatewayFactory, tmp_path: Path, param: str, value: str
) -> None:
    base = serve(gateway, tmp_path, None)
    response = get(base, "/v1/logs", **{param: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert param in error["message"]


def test_status_and_error_together_must_agree(gateway: GatewayFactory, tmp_path: Path) -> None:
    base = serve(gateway, tmp_path, None)
    response = get(base, "/v1/logs", status="200", error="true")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "error"


def _row(request_id: str, when: datetime, key: str = "k1") -> dict[str, Any]:
    return {
        "id": request_id,
        "created_at": when,
        "finished_at": when,
        "key_id": key,
        "team": None,
        "route": "chat",
        "alias": "m",
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
    }


def test_each_filter_has_an_index(engine: Engine) -> None:
    """Filters read an index, newest first, rather than the table (migration 0005)."""
    found = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("request_log")}
    assert found["ix_request_log_created_at"] == ["created_at"]
    assert found["ix_request_log_key_created"] == ["key_id", "created_at"]
    assert found["ix_request_log_team_created"] == ["team", "created_at"]
    assert found["ix_request_log_alias_created"] == ["alias", "created_at"]
    assert found["ix_request_log_prompt_created"] == ["prompt_name", "created_at"]  # partial
    assert found["ix_request_log_errors_created"] == ["created_at"]  # partial: status >= 400


def test_keyset_pages_through_rows_of_one_instant(engine: Engine, tmp_path: Path) -> None:
    """Rows of the same microsecond are told apart by id, so no page repeats or skips one."""
    instant = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

    async def write() -> None:
        writer = RequestLogWriter(engine, tmp_path / "spool")
        writer.start()
        for index in range(7):
            writer.record(_row(f"r{index}", instant))
        writer.record(_row("older", instant - timedelta(microseconds=1)))
        writer.record(_row("newer", instant + timedelta(microseconds=1)))
        await writer.close()

    asyncio.run(write())
    seen: list[str] = []
    after: str | None = None
    while True:
        page = list_logs(engine, LogFilter(), limit=2, after=after)
        seen += [row.id for row in page.data]
        if not page.has_more:
            break
        after = page.next
    assert seen == ["newer", "r6", "r5", "r4", "r3", "r2", "r1", "r0", "older"]
    exact = list_logs(engine, LogFilter(since=instant, until=instant + timedelta(microseconds=1)))
    assert len(exact.data) == 7
    # A time in another zone means the same instant.
    shifted = instant.astimezone(datetime.now().astimezone().tzinfo)
    assert [r.id for r in list_logs(engine, LogFilter(until=shifted)).data] == ["older"]


def write(engine: Engine, tmp_path: Path, *rows: dict[str, Any]) -> None:
    async def go() -> None:
        writer = RequestLogWriter(engine, tmp_path / "spool")
        writer.start()
        for row in rows:
            writer.record(row)
        await writer.close()

    asyncio.run(go())


def test_a_follower_prints_each_row_once_in_the_order_written(
    engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    write(engine, tmp_path, _row("before", now - timedelta(seconds=2)))
    follower = Follower(engine, LogFilter())  # what is there already counts as printed
    assert follower.poll() == []
    listed = _row("listed", now)
    write(engine, tmp_path, listed, _row("new", now))
    follower.saw(list_logs(engine, LogFilter(key_id="k1"), limit=1).data)  # "new" or "listed"
    shown = [r.id for r in follower.poll()]
    assert len(shown) == 1
    assert shown[0] in ("new", "listed")
    assert follower.poll() == []
    # A long call ends now: it began before rows already printed, and is printed once.
    long_call = _row("long", now - timedelta(minutes=3))
    long_call["finished_at"] = datetime.now(UTC)
    write(engine, tmp_path, long_call, _row("other-key", now, key="k2"))
    assert [r.id for r in follower.poll()] == ["long", "other-key"]
    assert follower.poll() == []
    narrowed = Follower(engine, LogFilter(key_id="k2"))
    write(engine, tmp_path, _row("k1-again", datetime.now(UTC)))
    write(engine, tmp_path, _row("k2-again", datetime.now(UTC), key="k2"))
    assert [r.id for r in narrowed.poll()] == ["k2-again"]


# --- the CLI ------------------------------------------------------------------------------


def cli_env(tmp_path: Path, database: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / ".gateway")
    if database is not None:
        env["GATEWAY_DATABASE_URL"] = database
    return env


def cli(tmp_path: Path, database: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=cli_env(tmp_path, database),
    )


def test_logs_cli_lists_filters_and_shows(
    database: str | None, gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = serve(gateway, tmp_path, database)
    traffic = Traffic(base)
    logs(base)  # the gateway has written every row

    table = cli(tmp_path, database, "logs")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["time", "id", "key"]
    # Oldest first, as tail prints: the newest row is the last line.
    assert [next(i for i in traffic.ids if i in line) for line in lines[1:]] == traffic.ids
    assert "local/echo" in lines[1]
    assert "200" in lines[1]
    assert "greet@" + traffic.prompt_version in table.stdout
    assert "0.000003" in lines[1]  # $1 + $2 per million tokens, one token each way

    errors = cli(tmp_path, database, "logs", "--key", traffic.alpha["id"], "--status", "4xx")
    assert errors.returncode == 0, errors.stderr
    assert [line for line in errors.stdout.splitlines()[1:]] == [
        line for line in lines[1:] if traffic.ids[4] in line
    ]
    recent = cli(tmp_path, database, "logs", "--limit", "2", "--json")
    assert recent.returncode == 0, recent.stderr
    rows = [json.loads(line) for line in recent.stdout.splitlines()]
    assert [r["id"] for r in rows] == traffic.ids[-2:]
    assert "request_body" not in rows[0]

    shown = cli(tmp_path, database, "logs", "show", traffic.ids[1])
    assert shown.returncode == 0, shown.stderr
    assert f"id: {traffic.ids[1]}" in shown.stdout
    assert "key_id: " + traffic.alpha["id"] in shown.stdout
    assert "request_body:" in shown.stdout
    assert "two three" in shown.stdout

    missing = cli(tmp_path, database, "logs", "show", "req_nope")
    assert missing.returncode == 2
    assert "req_nope" in missing.stderr
    bad = cli(tmp_path, database, "logs", "--status", "teapot")
    assert bad.returncode == 2
    assert "--status" in bad.stderr
    bad_time = cli(tmp_path, database, "logs", "--since", "yesterday")
    assert bad_time.returncode == 2
    assert "--since" in bad_time.stderr
    for limit in ("0", "1001"):
        bad_limit = cli(tmp_path, database, "logs", "--limit", limit)
        assert bad_limit.returncode == 2
        assert bad_limit.stderr == f"error: --limit: must be 1 to 1000 calls, not {limit}\n"


def test_logs_follow_prints_new_rows_until_interrupted(
    database: str | None, gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = serve(gateway, tmp_path, database)
    first = chat(base, MASTER_KEY, model="local/echo", messages=user("before"))
    logs(base)
    follower = subprocess.Popen(
        [sys.executable, "-m", "gateway", "logs", "--follow", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # A follower that outlives its Ctrl-C dumps every thread's stack on SIGABRT (below).
        env={**cli_env(tmp_path, database), "PYTHONFAULTHANDLER": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    output = follower.stdout
    assert output is not None

    def read() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def wait_for(request_id: str) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                got.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if request_id in got[-1]:
                return got
        raise AssertionError(f"{request_id} never printed; got {got}")

    try:
        wait_for(first.headers["x-gateway-request-id"])
        later = [
            chat(base, MASTER_KEY, model="local/echo", messages=user(f"after {i}"))
            for i in range(3)
        ]
        printed = wait_for(later[-1].headers["x-gateway-request-id"])
        joined = "".join(printed)
        for response in later:
            assert joined.count(response.headers["x-gateway-request-id"]) == 1
        assert first.headers["x-gateway-request-id"] not in joined  # printed once, not again
    finally:
        # Stopped whatever happened above, without hiding it: a follower still running 30 s
        # after Ctrl-C is made to print where it is stuck, and that is the failure shown.
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(timeout=30)
        except subprocess.TimeoutExpired:
            follower.send_signal(signal.SIGABRT)
            follower.wait(timeout=10)
            stuck = follower.stderr.read() if follower.stderr else ""
            pytest.fail(f"gateway logs --follow ignored Ctrl-C for 30 s:\n{stuck}")
    assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""


# --- the demo price and spend in keys list ---------------------------------------------------


def test_shipped_config_prices_local_echo_at_the_documented_demo_price(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    config = load_config(SHIPPED)
    echo = next(d for d in config.model_list if d.model_name == "local/echo")
    assert echo.model_info.input_cost_per_token == DEMO_INPUT
    assert echo.model_info.output_cost_per_token == DEMO_OUTPUT
    readme = (ROOT / "README.md").read_text()
    assert "$1 per million input tokens and $2 per million output tokens" in readme

    base = serve(gateway, tmp_path, None)
    reply = sdk(base).chat.completions.with_raw_response.create(
        model="local/echo", messages=user("hello gateway")
    )
    assert float(reply.headers["x-gateway-cost-usd"]) == pytest.approx(
        2 * DEMO_INPUT + 2 * DEMO_OUTPUT
    )
    costs = get(base, "/v1/costs").json()
    assert costs["total_cost_usd"] == pytest.approx(2 * DEMO_INPUT + 2 * DEMO_OUTPUT)
    # A bound with an offset is the instant it names (SQLite compares times as UTC text).
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    later = get(base, "/v1/costs", **{"from": in_an_hour.isoformat()}).json()
    assert later["total_cost_usd"] == 0
    metrics = ""
    deadline = time.monotonic() + 10
    while "gateway_cost_usd_total{" not in metrics and time.monotonic() < deadline:
        metrics = httpx.get(f"{base}/metrics").text
        time.sleep(0.1)
    (line,) = [m for m in metrics.splitlines() if m.startswith("gateway_cost_usd_total{")]
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(2 * DEMO_INPUT + 2 * DEMO_OUTPUT)


def test_keys_list_shows_spend_budget_and_limits(
    database: str | None, gateway: GatewayFactory, tmp_path: Path
) -> None:
    base = serve(gateway, tmp_path, database)
    budgeted = make_key(
        base, name="budgeted", max_budget=1, budget_duration="1d", rpm_limit=60, tpm_limit=100_000
    )
    free = make_key(base, name="unlimited")
    for _ in range(2):
        assert chat(base, budgeted["key"], model="local/echo", messages=user("hello")).is_success
    logs(base)  # written

    listed = {k["id"]: k for k in get(base, "/v1/keys").json()["data"]}
    assert listed[budgeted["id"]]["spend"] == pytest.approx(2 * (DEMO_INPUT + DEMO_OUTPUT))
    assert "spend" not in listed[free["id"]]  # no budget: spend is in `costs report`
    teams = get(base, "/v1/teams").json()
    assert teams["object"] == "list"

    result = cli(tmp_path, database, "keys", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert re.split(r"\s+", header.strip()) == [
        "id",
        "prefix",
        "name",
        "team",
        "spend",
        "budget",
        "period",
        "rpm",
        "tpm",
        "state",
    ]
    (line,) = [r for r in rows if budgeted["id"] in r]
    cells = line.split()
    assert cells[4:] == ["0.000006", "1.00", "1d", "60", "100000", "active"]
    (line,) = [r for r in rows if free["id"] in r]
    assert line.split()[4:] == ["-", "-", "-", "-", "-", "active"]

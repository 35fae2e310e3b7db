"""The stores on both databases the gateway supports: SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from gateway.evals.store import EvalStore
from gateway.identity.keys import KeyCache, KeyStore, hash_key
from gateway.observability.request_log import RequestLogWriter
from gateway.observability.spend import cost_report, spent_since
from gateway.prompts.files import parse_prompt
from gateway.prompts.store import GitInfo, PromptStore, git_info
from gateway.store.db import MIGRATIONS, head_revision, make_engine
from gateway.store.tables import request_log

PROMPT = """---
model: local/echo
input:
  schema:
    name: string
---
{{role "user"}}
Hi {{name}}
"""


def _row(request_id: str, key: str, cost: float, when: datetime) -> dict[str, Any]:
    return {
        "id": request_id,
        "created_at": when,
        "finished_at": when,
        "key_id": key,
        "team": "t1",
        "route": "chat",
        "alias": "m",
        "status": 200 if cost else 500,
        "stream": False,
        "attempts": 1,
        "latency_ms": 1.0,
        "input_tokens": 3,
        "output_tokens": 4,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "estimated": False,
    }


def test_keys_and_cache(engine: Engine) -> None:
    store = KeyStore(engine)
    record, key = store.create({"name": "a", "team": "t1", "models": ["gpt-*"], "rpm_limit": 5})
    assert store.by_hash(hash_key(key)) == record
    assert [t.id for t in store.list_teams()] == ["t1"]
    cache = KeyCache(store)
    cache.refresh()
    assert cache.by_hash[hash_key(key)].models == ("gpt-*",)
    _, new_key = store.rotate(record.id)
    store.revoke(record.id)
    cache.refresh()
    assert hash_key(key) not in cache.by_hash
    assert cache.by_hash[hash_key(new_key)].revoked
    patched = store.update(record.id, {"models": None, "max_budget": 2.5})
    assert (patched.models, patched.max_budget) == ((), 2.5)


def test_request_log_batches_replay_and_reports(engine: Engine, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)

    async def write() -> None:
        writer = RequestLogWriter(engine, tmp_path / "spool", batch_size=3)
        writer.start()
        writer.record(_row("r1", "k1", 0.5, yesterday))
        for index in range(2, 8):
            writer.record(_row(f"r{index}", "k1" if index % 2 else "k2", 0.25, now))
        writer.record(_row("r8", "k2", 0.0, now))
        await writer.close()
        writer._spool_or_hold([_row("r2", "k1", 0.25, now)])  # a replay of a row already written
        writer._replay()

    asyncio.run(write())
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(request_log)).scalar()
    assert count == 8
    by_key = {r.key: r for r in cost_report(engine, "key", None, None)}
    assert by_key["k1"].cost_usd == pytest.approx(1.25)
    assert by_key["k2"].errors == 1
    days = cost_report(engine, "day", None, None)
    assert sorted(d.requests for d in days) == [1, 7]
    assert set(days[0].model_dump()) == {
        "day",
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    }
    assert spent_since(engine, request_log.c.key_id, "k1", now - timedelta(hours=1)) == 0.75


def test_prompt_versions_labels_and_evals(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "hi.prompt"
    path.write_text(PROMPT)
    store = PromptStore(engine)
    first = parse_prompt(path)
    assert store.register(first, GitInfo("abc", "ana", "add hi"), "test")
    assert not store.register(first, GitInfo(), "test")  # immutable: same content, no-op
    path.write_text(PROMPT.replace("Hi", "Hello"))
    second = parse_prompt(path)
    store.register(second, GitInfo(), "test")
    assert store.labels("hi") == {
        "latest": {"version": second.version},
        "production": {"version": first.version},
    }
    store.promote("hi", "production", {"weights": {first.version: 1, second.version: 3}}, "a", "ab")
    store.rollback("hi", "production", "b", None)
    assert store.labels("hi")["production"] == {"version": first.version}
    assert store.versions("hi")[0].git_commit == "abc"
    evals = EvalStore(engine)
    verdict = {"passed": True, "reasons": [], "regressed": [], "improved": []}
    candidate = {
        "target": "prompt:hi@latest",
        "version": f"hi@{second.version}",
        "pass_rate": 1.0,
        "mean_score": 1.0,
        "cases": 2,
        "failed": 0,
        "errors": 0,
        "cost_usd": 0.0,
    }
    run_id = evals.record({"suite": "hi", "verdict": verdict, "candidate": candidate})
    assert evals.has_passing_run("hi", f"hi@{second.version}")
    assert not evals.has_passing_run("hi", f"hi@{first.version}")
    assert evals.run(run_id).report["candidate"]["cases"] == 2


def test_git_info_names_the_commit_of_a_committed_file(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    path = tmp_path / "hi.prompt"
    path.write_text(PROMPT)
    git("add", "hi.prompt")
    git("-c", "user.name=Ana", "-c", "user.email=ana@example.com", "commit", "-qm", "Add hi")
    info = git_info(path)
    assert (info.author, info.message) == ("Ana", "Add hi")
    assert info.commit is not None
    assert len(info.commit) == 40
    path.write_text(PROMPT + "\n{{name}}\n")  # edited since the commit: no commit to name
    assert git_info(path) == GitInfo()


def test_head_revision_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


def test_an_up_to_date_database_starts_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    make_engine(url).dispose()
    script = (
        "import sys\n"
        "from gateway.store.db import MIGRATIONS, head_revision, make_engine, migrate\n"
        f"engine = make_engine({url!r})\n"
        "migrate(engine)\n"
        "print('alembic' in sys.modules)\n"
    )
    run = [sys.executable, "-c", script]
    first = subprocess.run(run, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "True"  # an empty database is migrated
    again = subprocess.run(run, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "False"  # at head: nothing to import, nothing to do


def test_a_flush_writes_what_was_queued_and_leaves_late_rows_for_the_next(
    engine: Engine, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    writer = RequestLogWriter(engine, tmp_path / "spool", batch_size=100)
    inserts: list[int] = []

    def late_row(*_args: Any) -> None:
        inserts.append(1)
        if len(inserts) == 1:  # a call finishing while the first batch is being written
            writer.record(_row("late", "k1", 0.1, now))

    event.listen(engine, "before_cursor_execute", late_row)
    try:

        async def run() -> None:
            for index in range(3):
                writer.record(_row(f"early{index}", "k1", 0.1, now))
            await writer.flush()
            assert writer.written == 3  # one batch; the late row did not extend it
            await writer.flush()
            assert writer.written == 4

        asyncio.run(run())
    finally:
        event.remove(engine, "before_cursor_execute", late_row)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(request_log)).scalar()
    assert count == 4

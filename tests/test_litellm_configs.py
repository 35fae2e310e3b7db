"""LiteLLM users' configs: each file of tests/litellm_configs/ loads with the behaviour its
header declares (settings reported, deployments left out, calls reaching the loopback upstream
with the right key), or is refused with one line per LiteLLM feature the gateway will not do.
The header grammar is in tests/litellm_configs/README.md.

The README's "Coming from LiteLLM" table is held to gateway/core/litellm_support.py here too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.core.config import load_config
from gateway.core.errors import ConfigError
from gateway.core.general_settings import settings_from_config
from gateway.core.litellm_support import RULES, Status
from gateway.core.settings import Settings
from tests.conftest import MASTER_KEY, ServerThread
from tests.fakes.upstream import FakeUpstream

CORPUS = Path(__file__).resolve().parent / "litellm_configs"
README = Path(__file__).resolve().parent.parent / "README.md"
FILES = sorted(CORPUS.glob("*.yaml"))
HEADER = re.compile(
    r"^#\s*(expect|env|unset|warns|left-out|client-key|call|unavailable):\s*(.+?)\s*$"
)
CALL = re.compile(r"^(?P<alias>\S+) -> (?P<model>\S+) bearer (?P<key>\S+)$")


@dataclass
class Expected:
    """What a corpus file's header comments declare."""

    loads: bool = True
    refused: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    client_key: str | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Expected:
        expected = cls()
        declared = False
        for line in path.read_text().splitlines():
            found = HEADER.match(line)
            if not found:
                continue
            what, value = found.groups()
            if what == "expect":
                declared = True
                if value != "loads":
                    verb, _, feature = value.partition(" ")
                    assert verb == "refused", f"{path.name}: expect {value!r}"
                    assert feature, f"{path.name}: expect {value!r} names no feature"
                    expected.loads = False
                    expected.refused.append(feature)
            elif what == "env":
                name, _, env_value = value.partition("=")
                expected.env[name] = env_value
            elif what == "unset":
                expected.unset.append(value)
            elif what == "warns":
                expected.warns.append(value)
            elif what == "left-out":
                expected.left_out.append(value)
            elif what == "client-key":
                expected.client_key = value
            elif what == "call":
                call = CALL.match(value)
                assert call, f"{path.name}: call {value!r} (ALIAS -> MODEL bearer KEY)"
                expected.calls.append((call["alias"], call["model"], call["key"]))
            else:
                alias, _, variable = value.partition(" ")
                expected.unavailable.append((alias, variable))
        assert declared, f"{path.name}: no '# expect: loads' or '# expect: refused FEATURE' line"
        return expected


@pytest.fixture
def environment() -> Iterator[None]:
    """The process environment as it was: serving a file sets its environment_variables."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _prepare(expected: Expected, upstream: FakeUpstream) -> None:
    for name in expected.unset:
        os.environ.pop(name, None)
    for name, value in expected.env.items():
        os.environ[name] = value.replace("{upstream}", upstream.url)


def test_the_corpus_has_files() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_litellm_config(
    path: Path, upstream: FakeUpstream, tmp_path: Path, environment: None
) -> None:
    expected = Expected.read(path)
    _prepare(expected, upstream)
    if not expected.loads:
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        lines = str(caught.value).splitlines()
        for feature, line in zip(expected.refused, lines, strict=True):
            assert re.match(rf"^{re.escape(str(path))}:\d+: {re.escape(feature)}: ", line), line
            assert "not supported" in line
        return
    config = load_config(path)
    settings = Settings(config=path, data_dir=tmp_path / ".gateway", master_key=None)
    settings = settings_from_config(settings, config)  # serving would fail here, too
    reported = [note.path for note in config.report.notes]
    assert sorted(reported) == sorted(expected.warns)
    assert sorted(d.alias for d in config.report.left_out) == sorted(expected.left_out)
    if expected.calls or expected.unavailable:
        _serve_and_call(settings, expected, upstream)


def _serve_and_call(settings: Settings, expected: Expected, upstream: FakeUpstream) -> None:
    if expected.client_key is None:
        settings = settings.model_copy(update={"master_key": MASTER_KEY})
    key = expected.client_key or MASTER_KEY
    server = ServerThread(create_app(settings), settings)
    base = server.start()
    try:
        for alias, model, upstream_key in expected.calls:
            before = upstream.calls(model)
            response = _chat(base, key, alias)
            assert response.status_code == 200, response.text
            assert upstream.calls(model) == before + 1
            received = upstream.last_request(model)
            assert received is not None
            assert received.headers["authorization"] == f"Bearer {upstream_key}"
        for alias, variable in expected.unavailable:
            response = _chat(base, key, alias)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "model_not_configured"
            assert variable in error["message"]
            assert response.headers["x-should-retry"] == "false"
    finally:
        server.stop()


def _chat(base: str, key: str, alias: str) -> httpx.Response:
    body = {"model": alias, "messages": [{"role": "user", "content": "migrated"}]}
    return httpx.post(
        f"{base}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


# --- the README's "Coming from LiteLLM" table ---------------------------------------------------

MIGRATION_HEADING = "## Coming from LiteLLM"
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+?) \| (.+) \|$")


def readme_rows() -> dict[str, tuple[str, str]]:
    _, heading, rest = README.read_text().partition(MIGRATION_HEADING)
    assert heading, f"README.md has no {MIGRATION_HEADING!r} section"
    rows: dict[str, tuple[str, str]] = {}
    for line in rest.splitlines():
        if line.startswith("## "):
            break
        row = ROW.match(line.strip())
        if row:
            rows[row[1]] = (row[2].strip(), row[3].strip())
    return rows


def _row(path: str) -> str:
    rule = RULES[path]
    return f"| `{rule.path}` | {rule.status.value} | {rule.note} |"


def test_readme_migration_table_follows_litellm_support() -> None:
    rows = readme_rows()
    words = {status.value for status in Status}
    said = [s for s, _ in rows.values() if not any(s == w or s.startswith(f"{w} (") for w in words)]
    assert not said, f"each row says one of {sorted(words)} (and maybe more in brackets): {said}"
    covered = {path.split(".")[0] for path in RULES}  # sections the module decides
    missing = [
        _row(path)
        for path in RULES
        if rows.get(path) != (RULES[path].status.value, RULES[path].note)
    ]
    assert not missing, (
        "README rows to add or update (from gateway/core/litellm_support.py):\n"
        + "\n".join(missing)
    )
    unknown = [path for path in rows if path.split(".")[0] in covered and path not in RULES]
    assert not unknown, f"README rows gateway/core/litellm_support.py does not decide: {unknown}"

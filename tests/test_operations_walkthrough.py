"""README "Operations" > "Two replicas on one machine", followed literally: its bash blocks,
in order, in one shell, in a fresh copy of the project, as a reader pastes them. The one
difference: the variables the first block defaults (DB, R1, R2, LB) are set by this test, so
the run has its own database, Redis prefix and free ports on a shared machine."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, ROOT, free_port
from tests.test_readme import BLOCKS, VENV_BIN, Block, fresh_clone

pytestmark = pytest.mark.slow

HEADING = "### Two replicas on one machine"
TIMEOUT_S = 300
# Where the walk-through finds nginx: the PATH, and Debian's /usr/sbin (block 4 adds it).
NGINX_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])


def walkthrough_blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text().splitlines()
    start = text.index(HEADING) + 1
    end = next(i for i in range(start, len(text)) if text[i].startswith(("## ", "### ")))
    return [b for b in BLOCKS if start < b.line <= end and b.lang == "bash"]


def test_the_walkthrough_is_there_and_marked_for_this_test() -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) == 7
    for block in blocks:
        assert block.marker is not None
        assert "tests/test_operations_walkthrough.py" in block.marker
    first = blocks[0].code
    for name in ("DB", "R1", "R2", "LB"):
        assert re.search(rf"\b{name}=\$\{{{name}:-", first), f"block 1 must default {name}"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    fresh_clone(root)
    return root


@pytest.fixture
def leftovers(clone: Path) -> Iterator[str]:
    """The run's database name; whatever the walk-through leaves behind when it fails
    (replicas, nginx, the database, Redis keys) is cleaned up after."""
    name = f"gw_walk_{uuid.uuid4().hex[:10]}"
    yield name
    # nginx's master (it stops its workers) while its pid file says it runs; the replicas.
    _stop(clone / ".gateway" / "lb" / "nginx.pid", "nginx")
    for pid_file in (clone / ".gateway").glob("replica-*.pid"):
        _stop(pid_file, "gateway")
    time.sleep(1)
    import psycopg
    import redis

    from tests.conftest import REDIS_URL

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _stop(pid_file: Path, command: str) -> None:
    """SIGTERM to the process a pid file names, if it still runs `command`: a pid left from
    a finished run may belong to another process by now."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        if command.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)


def test_two_replicas_on_one_machine_as_the_readme_says(
    clone: Path, leftovers: str, pg_url: str, redis_prefix: str
) -> None:
    # pg_url and redis_prefix: skip (or fail in CI) when PostgreSQL or Redis is not here.
    for tool in ("createdb", "dropdb", "curl", "nginx"):
        if shutil.which(tool, path=NGINX_PATH) is None:
            message = f"the walk-through uses {tool} (PostgreSQL's client tools, curl, nginx)"
            if os.environ.get("CI") == "true":  # .ci/run installs nginx-light
                pytest.fail(message)
            pytest.skip(message)
    blocks = walkthrough_blocks()
    script = "set -euo pipefail\n" + "\n".join(block.code for block in blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(clone)  # the copy's gateway, as `make install` gives a reader
    ports = {name: str(free_port()) for name in ("R1", "R2", "LB")}
    env |= {"DB": leftovers, **ports}
    done = subprocess.run(
        ["bash", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
        cwd=clone,
        env=env,
    )
    logs = "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in [
            *sorted((clone / ".gateway").glob("replica-*.log")),
            *sorted((clone / ".gateway" / "lb").glob("*.log")),
        ]
    )
    shown = f"--- output\n{done.stdout}\n{logs}"
    assert done.returncode == 0, shown
    position = 0
    for block in blocks:
        for text in block.expected_output():
            found = done.stdout.find(text, position)
            assert found >= 0, f"{block.id}: `# -> {text}` not in the output (in order)\n{shown}"
            position = found + len(text)
    # Both replicas stopped (blocks 6 and 7), and nginx (it removes its pid file on exit).
    for n in (1, 2):
        pid = int((clone / ".gateway" / f"replica-{n}.pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (clone / ".gateway" / "lb" / "nginx.pid").exists()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", int(ports["LB"])), timeout=5),
    ):
        pass
    # nginx wrote only under the project's .gateway/lb: its config, logs, temp dirs.
    assert {"nginx.conf", "gateway.conf", "access.log", "error.log"} <= {
        path.name for path in (clone / ".gateway" / "lb").iterdir()
    }

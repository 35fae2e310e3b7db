"""A Redis that answers but refuses the gateway (no password given, a wrong one, an ACL user
without the permissions metering needs): metered calls get 503 naming the problem, never 500,
and /readyz says why under "redis". A throwaway redis-server with `--requirepass` and an ACL
user of its own, never the machine's Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MASTER_KEY, ROOT, GatewayFactory, free_port

PASSWORD = "s3cret-for-this-test"
# Allowed to log in and PING, nothing else: readiness by PING alone would call it healthy.
LIMITED = ("limited", "limited-pw")
# Allowed to run scripts, not the commands in them (Redis checks those inside the script).
SCRIPTS_ONLY = ("scripts-only", "scripts-only-pw")
# The README's least-privilege ACL user for the gateway (Operations), whose prefix is gw:.
DOCUMENTED_ACL = (
    "ACL SETUSER gateway on >PASSWORD ~gw:* +@connection +eval +evalsha +script|load "
    "+hget +hgetall +hmget +hset +hsetnx +hincrby +hdel +hexists +del +exists +expire "
    "+expireat +zadd +zrangebyscore +zrem +zremrangebyscore"
)

LOGIN = "Redis refuses the gateway's login"
PERMISSION = "Redis refuses a command the gateway needs"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server on a free port that wants a password, with a user who may only PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; these tests start one of their own")
    port = free_port()
    user, password = LIMITED
    server = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    acl = ["--user", user, "on", f">{password}", "~*", "-@all", "+ping", "+auth", "+hello"]
    scripts_user, scripts_password = SCRIPTS_ONLY
    acl += ["--user", scripts_user, "on", f">{scripts_password}", "~*", "+@connection"]
    acl += ["+eval", "+evalsha", "+script|load"]
    # The documented user, with its own password.
    documented = DOCUMENTED_ACL.removeprefix("ACL SETUSER ").replace("PASSWORD", PASSWORD)
    acl += ["--user", *documented.split()]
    process = subprocess.Popen(
        [*server, "--save", "", "--appendonly", "no", "--requirepass", PASSWORD, *acl],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the throwaway redis-server on port {port} did not start")
        client.close()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _metered_call(base: str, **limits: Any) -> httpx.Response:
    """A call by a new key with limits (a rate limit unless told): Redis admits it or
    nobody does."""
    made = httpx.post(
        f"{base}/v1/keys",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"name": "metered", **(limits or {"rpm_limit": 100})},
        timeout=30,
    )
    assert made.status_code == 200, made.text
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {made.json()['key']}"},
        json={"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def _readiness(base: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{base}/readyz", timeout=30)
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        ("", LOGIN),  # no password given
        (":wrong-password@", LOGIN),
        (f"{LIMITED[0]}:wrong-password@", LOGIN),
        (f"{LIMITED[0]}:{LIMITED[1]}@", PERMISSION),  # logs in, may not run scripts
        (f"{SCRIPTS_ONLY[0]}:{SCRIPTS_ONLY[1]}@", PERMISSION),  # not what the scripts run
    ],
    ids=[
        "no-password",
        "wrong-password",
        "wrong-acl-password",
        "acl-user-without-scripts",
        "acl-user-without-the-scripts-commands",
    ],
)
def test_a_refusing_redis_gives_503_naming_the_problem(
    gateway: GatewayFactory, locked_redis: int, credentials: str, problem: str
) -> None:
    base = gateway(redis_url=f"redis://{credentials}127.0.0.1:{locked_redis}/0", redis_prefix="t:")

    status, body = _readiness(base)
    assert status == 503
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith(problem), body
    assert "GATEWAY_REDIS_URL" in body["checks"]["redis"]

    for _ in range(2):  # the first call and one while the guard skips Redis for a while
        answer = _metered_call(base)
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "meter_unavailable"
        assert error["type"] == "server_error"
        assert problem in error["message"]
        assert "GATEWAY_REDIS_URL" in error["message"]
        # Retrying will not help until the operator acts: SDKs are told so.
        assert answer.headers["x-should-retry"] == "false"
        assert "retry-after" not in answer.headers
        # The operator's secret and Redis' address stay out of the caller's answer.
        assert PASSWORD not in answer.text
        assert str(locked_redis) not in answer.text

    # The master key meters nothing: its calls are served whatever Redis says.
    served = httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "local/echo", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert served.status_code == 200, served.text


@pytest.mark.parametrize("user", ["", "gateway"], ids=["password", "documented-acl-user"])
def test_the_right_credentials_serve(gateway: GatewayFactory, locked_redis: int, user: str) -> None:
    """The password, and the README's least-privilege ACL user: every script metering runs
    (limits, budgets, leases, their settling) passes."""
    base = gateway(redis_url=f"redis://{user}:{PASSWORD}@127.0.0.1:{locked_redis}/0")
    status, body = _readiness(base)
    assert (status, body["checks"]["redis"]) == (200, "ok")
    for _ in range(3):
        answer = _metered_call(base, rpm_limit=100, tpm_limit=100_000, max_budget=5.0)
        assert answer.status_code == 200, answer.text


def test_the_readme_shows_the_acl_user_tested_here() -> None:
    assert DOCUMENTED_ACL in " ".join((ROOT / "README.md").read_text().split())


def test_fail_open_lets_calls_through_and_reports_the_refusal(
    gateway: GatewayFactory, locked_redis: int
) -> None:
    """GATEWAY_REDIS_FAIL_OPEN: a Redis the gateway cannot use, reachable or not, lets calls
    through unmetered; readiness still names why."""
    base = gateway(
        redis_url=f"redis://:wrong-password@127.0.0.1:{locked_redis}/0",
        redis_prefix="t:",
        redis_fail_open=True,
    )
    status, body = _readiness(base)
    assert status == 200
    assert body["checks"]["redis"].startswith(LOGIN)
    answer = _metered_call(base)
    assert answer.status_code == 200, answer.text

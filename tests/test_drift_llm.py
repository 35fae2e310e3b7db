"""End to end for LLM traffic: calls through two prompts to the loopback upstream, sampled by
the gateway, compared by its background job with the bundled embedding model, and shifted
for one prompt only. That prompt's subject, and no other, is flagged in the API, the CLI, the
Prometheus gauges and one signed webhook call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.drift.webhook import SIGNATURE_HEADER, signature
from tests.conftest import MASTER_KEY, ROOT, GatewayFactory, fake_model, sdk
from tests.fakes.upstream import FakeUpstream
from tests.fakes.webhook import WebhookReceiver, running_receiver

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
SECRET = "drift-test-secret"
WINDOW = 120  # reference rows, current rows

PROMPT = """---
model: fake
input:
  schema:
    text: string
---
{{role "system"}}
Answer the customer briefly.
{{role "user"}}{{text}}
"""
# The user turn starts at its text (no line break after the role marker, which Dotprompt keeps),
# so the fake upstream's "echo: " answer reads as a model's would, refusals included.
MONTHS = ["January", "February", "March", "April", "May", "June"]
BILLING = [
    f"My {month} invoice shows {count} charges for one plan."
    for month in MONTHS
    for count in ("two", "three", "four", "five", "six")
]
OFFICE = [
    f"The team moves to the {floor} floor in {month}."
    for month in MONTHS
    for floor in ("second", "third", "fourth", "fifth", "sixth")
]
SHIFTED = [
    f"{opening} a long essay on {topic} and how researchers measure it across the {ocean} "
    f"with satellites, buoys and divers over many seasons"
    for opening in ("Please write", "I cannot help with", "Write")
    for topic in ("coral reef bleaching", "deep sea currents")
    for ocean in ("Pacific", "Atlantic", "Indian Ocean", "Arctic", "Southern Ocean")
]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as found:
        yield found


def config(upstream: FakeUpstream, hook: str) -> dict[str, Any]:
    fake = fake_model(upstream, "fake", f"gpt-4o-mini,id=drift-{uuid.uuid4().hex[:8]}")
    fake["model_info"] = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    return {
        "model_list": [fake],
        "drift": {
            "interval": 1,
            "subjects": [
                {
                    "sample_rate": 1.0,
                    "min_rows": 100,
                    "current": {"rows": WINDOW},
                    "reference": {"rows": WINDOW},
                }
            ],
            "webhook": {"url": hook, "secret": "os.environ/DRIFT_TEST_SECRET", "retries": 2},
        },
    }


def until(what: str, check: Callable[[], Any], seconds: float = 240) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"never happened: {what}")


def latest(base: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{base}/v1/monitoring/drift", headers=ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text
    return {report["subject"]: report for report in answer.json()["data"]}


def test_a_shifted_prompt_is_flagged_alone_everywhere(
    gateway: GatewayFactory,
    upstream: FakeUpstream,
    receiver: WebhookReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFT_TEST_SECRET", SECRET)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for name in ("triage", "summary"):
        (prompts / f"{name}.prompt").write_text(PROMPT)
    base = gateway(config(upstream, receiver.url), prompts_dir=prompts)
    client = sdk(base)
    versions: dict[str, str] = {}

    def send(name: str, texts: list[str]) -> None:
        for index in range(WINDOW):
            raw = client.chat.completions.with_raw_response.create(
                model="prompt",
                messages=[],
                extra_body={"prompt": {"name": name, "variables": {"text": texts[index % 30]}}},
            )
            versions[name] = raw.headers["x-gateway-prompt"].split("@")[1]

    send("triage", BILLING)
    send("summary", OFFICE)
    triage = f"prompt:triage@{versions['triage']}:fake"
    summary = f"prompt:summary@{versions['summary']}:fake"
    until(
        "both references made",
        lambda: all(
            (latest(base).get(s) or {}).get("reference") is not None for s in (triage, summary)
        ),
    )

    send("triage", BILLING)  # the same traffic: no drift, and no webhook call for it
    send("summary", OFFICE)

    def judged(subject: str, state: str, after: str = "") -> bool:
        report = latest(base).get(subject) or {}
        window = report.get("current") or {}
        return (
            report.get("state") == state
            and window.get("rows") == WINDOW
            and (window.get("first") or "") > after
        )

    until("no drift yet", lambda: judged(triage, "no_drift") and judged(summary, "no_drift"))
    assert receiver.received() == []

    started = time.time()
    send("triage", SHIFTED)  # shifted: longer, another topic, some refusals
    send("summary", OFFICE)
    since = _iso(started)
    until("triage drifts", lambda: judged(triage, "drift", since))
    until("summary judged on new traffic", lambda: judged(summary, "no_drift", since))

    reports = latest(base)
    assert {s for s, r in reports.items() if r["state"] == "drift"} == {triage}
    drifted = set(reports[triage]["drifted_columns"])
    assert {"input", "output", "output_tokens", "output_chars", "refusal"} <= drifted
    history = httpx.get(f"{base}/v1/monitoring/drift/{triage}", headers=ADMIN).json()["data"]
    assert {"drift", "no_drift"} <= {r["state"] for r in history}

    metrics = httpx.get(f"{base}/metrics").text
    assert f'gateway_drift_detected{{subject="{triage}"}} 1.0' in metrics
    assert f'gateway_drift_detected{{subject="{summary}"}} 0.0' in metrics
    assert f'gateway_drift_test_drifted{{column="input",subject="{triage}",' in metrics

    time.sleep(3)  # more runs of the job: the verdict stands, so no second call
    [delivery] = receiver.received()
    assert delivery.headers[SIGNATURE_HEADER.lower()] == signature(SECRET, delivery.body)
    event = delivery.json()
    assert (event["subject"], event["state"], event["previous"]) == (triage, "drift", "no_drift")

    html = tmp_path / "drift.html"
    cli = _cli(tmp_path, prompts, "drift", "report", "--json", "--html", str(html))
    assert cli.returncode == 1, cli.stderr
    found = {r["subject"]: r["state"] for r in json.loads(cli.stdout)["data"]}
    assert found == {triage: "drift", summary: "no_drift"}
    page = html.read_text()
    assert triage in page
    assert page.count("<svg") >= len(drifted)
    only_summary = _cli(tmp_path, prompts, "drift", "report", "--prompt", "summary")
    assert only_summary.returncode == 0, only_summary.stderr
    assert summary in only_summary.stdout
    assert triage not in only_summary.stdout
    assert len(receiver.received()) == 1  # the CLI saw no change either


def _iso(moment: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(moment, UTC).isoformat()


def _cli(tmp_path: Path, prompts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_CONFIG": str(tmp_path / "gateway-0.yaml"),
        "GATEWAY_DATA_DIR": str(tmp_path / ".gateway"),
        "GATEWAY_PROMPTS_DIR": str(prompts),
        "DRIFT_TEST_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )

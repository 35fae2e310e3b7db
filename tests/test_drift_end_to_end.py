"""End to end, on one running gateway: chat calls through two prompts to the loopback
upstream, and v2 infer calls to two example classic models (`gateway registry train-example`,
which records each version's drift reference), sampled by the gateway and compared by its
background job (texts with the bundled embedding model, features against the training data).
One prompt's traffic and one model's shift; their two subjects, and no other, are flagged in
the API, the CLI (exit 1; 0 for the others; 2 on bad input), the Prometheus gauges and one
signed webhook call each, received by a loopback HTTP server that checks the signature."""

from __future__ import annotations

import csv
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
import numpy as np
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


CLASSIC = ("iris", "wine")  # iris's traffic stays as trained; wine's features grow by 30%
IRIS, WINE = "classic:iris@1", "classic:wine@1"


def config(upstream: FakeUpstream, hook: str) -> dict[str, Any]:
    fake = fake_model(upstream, "fake", f"gpt-4o-mini,id=drift-{uuid.uuid4().hex[:8]}")
    fake["model_info"] = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    classic = [{"model_name": n, "litellm_params": {"model": f"registry/{n}"}} for n in CLASSIC]
    return {
        "model_list": [fake, *classic],
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


def test_shifted_subjects_are_flagged_alone_everywhere(
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
    for name in CLASSIC:  # as a user makes them: each version records its drift reference
        trained = _cli(tmp_path, prompts, "registry", "train-example", "--name", name,
                       "--dataset", name)  # fmt: skip
        assert trained.returncode == 0, trained.stderr
    until("both classic models ready", lambda: all(_ready(base, name) for name in CLASSIC))
    data = {name: _dataset(tmp_path, name) for name in CLASSIC}
    rng = np.random.default_rng(19)

    def send(name: str, texts: list[str]) -> None:
        for index in range(WINDOW):
            raw = client.chat.completions.with_raw_response.create(
                model="prompt",
                messages=[],
                extra_body={"prompt": {"name": name, "variables": {"text": texts[index % 30]}}},
            )
            versions[name] = raw.headers["x-gateway-prompt"].split("@")[1]

    def infer(name: str, scale: float = 1.0) -> None:
        """WINDOW rows of the model's own data set, ten per call."""
        rows = data[name][rng.integers(0, len(data[name]), WINDOW)] * scale
        for start in range(0, WINDOW, 10):
            batch = rows[start : start + 10]
            tensor = {"name": "input-0", "shape": list(batch.shape), "datatype": "FP32",
                      "data": batch.tolist()}  # fmt: skip
            answer = httpx.post(
                f"{base}/v2/models/{name}/infer", json={"inputs": [tensor]}, headers=ADMIN
            )
            assert answer.status_code == 200, answer.text

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
    infer("iris")
    infer("wine")

    def judged(subject: str, state: str, after: str = "") -> bool:
        report = latest(base).get(subject) or {}
        window = report.get("current") or {}
        return (
            report.get("state") == state
            and window.get("rows") == WINDOW
            and (window.get("first") or "") > after
        )

    every = (triage, summary, IRIS, WINE)
    until("no drift yet", lambda: all(judged(s, "no_drift") for s in every))
    classic = latest(base)[IRIS]
    assert classic["reference"]["source"] == "training data: sklearn.datasets.load_iris, 112 rows"
    assert {c["column"] for c in classic["columns"]} >= {"petal length (cm)", "predict"}
    assert receiver.received() == []

    started = time.time()
    send("triage", SHIFTED)  # shifted: longer, another topic, some refusals
    send("summary", OFFICE)
    infer("iris")
    infer("wine", scale=1.3)
    since = _iso(started)
    until(
        "triage and wine drift",
        lambda: judged(triage, "drift", since) and judged(WINE, "drift", since),
    )
    until(
        "summary and iris judged on new traffic",
        lambda: judged(summary, "no_drift", since) and judged(IRIS, "no_drift", since),
    )

    reports = latest(base)
    assert {s for s, r in reports.items() if r["state"] == "drift"} == {triage, WINE}
    drifted = set(reports[triage]["drifted_columns"])
    texts = [c for c in reports[triage]["columns"] if c["column"] in ("input", "output")]
    assert {"input", "output", "output_tokens", "output_chars", "refusal"} <= drifted, (
        reports[triage]["reference"],
        reports[triage]["current"],
        texts,
    )
    assert {"alcohol", "proline"} <= set(reports[WINE]["drifted_columns"])
    history = httpx.get(f"{base}/v1/monitoring/drift/{triage}", headers=ADMIN).json()["data"]
    assert {"drift", "no_drift"} <= {r["state"] for r in history}

    metrics = httpx.get(f"{base}/metrics").text
    for subject in every:
        flagged = "1.0" if subject in (triage, WINE) else "0.0"
        assert f'gateway_drift_detected{{subject="{subject}"}} {flagged}' in metrics
    assert f'gateway_drift_test_drifted{{column="input",subject="{triage}",' in metrics
    assert (
        f'gateway_drift_test_drifted{{column="alcohol",subject="{WINE}",test="ks"}} 1.0' in metrics
    )

    time.sleep(3)  # more runs of the job: the verdicts stand, so no second call
    deliveries = receiver.received()
    events = {}
    for delivery in deliveries:  # each one signed with the shared secret
        assert delivery.headers[SIGNATURE_HEADER.lower()] == signature(SECRET, delivery.body)
        event = delivery.json()
        events[event["subject"]] = (event["state"], event["previous"])
    assert len(deliveries) == 2
    assert events == {triage: ("drift", "no_drift"), WINE: ("drift", "no_drift")}

    html = tmp_path / "drift.html"
    cli = _cli(tmp_path, prompts, "drift", "report", "--json", "--html", str(html))
    assert cli.returncode == 1, cli.stderr
    found = {r["subject"]: r["state"] for r in json.loads(cli.stdout)["data"]}
    assert found == {triage: "drift", summary: "no_drift", IRIS: "no_drift", WINE: "drift"}
    page = html.read_text()
    assert triage in page
    assert WINE in page
    assert page.count("<svg") >= len(drifted)
    for args, code, shown, hidden in (
        (("--prompt", "summary"), 0, summary, triage),
        (("--model", "iris"), 0, IRIS, WINE),
        (("--model", "wine"), 1, WINE, IRIS),
    ):
        only = _cli(tmp_path, prompts, "drift", "report", *args)
        assert only.returncode == code, only.stdout + only.stderr
        assert shown in only.stdout
        assert hidden not in only.stdout
    wrong = _cli(tmp_path, prompts, "drift", "report", "--model", "roses")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error: no sampled subject matches --model roses")
    assert len(receiver.received()) == 2  # the CLI saw no change either


def _ready(base: str, name: str) -> bool:
    return httpx.get(f"{base}/v2/models/{name}/ready", headers=ADMIN).status_code == 200


def _dataset(tmp_path: Path, name: str) -> Any:
    """The data set train-example wrote (features, then the target)."""
    with (tmp_path / ".gateway" / "models" / name / f"{name}.csv").open() as handle:
        rows = list(csv.reader(handle))[1:]
    return np.array([[float(v) for v in row[:-1]] for row in rows])


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

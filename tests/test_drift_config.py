"""The `drift:` section: mistakes named by file, line and key path; each setting of a subject
taken from the first entry that matches it and sets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.config import load_config
from gateway.core.errors import ConfigError
from gateway.drift.settings import resolve
from gateway.drift.subjects import classic, for_call


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("    - current: {window: 2w}\n", ":3: drift.subjects[0].current.window: must look like"),
        ("    - sample_rate: 2\n", ":3: drift.subjects[0].sample_rate: Input should be less"),
        ("    - thresholds: {kss: 0.1}\n", ":3: drift.subjects[0].thresholds.kss"),
        ("    - reference: {since: yesterday}\n", "reference.since: must be an ISO 8601"),
        ("    - max_categorical_values: 21\n", "max_categorical_values: Input should be less"),
        ("    - numerical: chisquare\n", "drift.subjects[0].numerical: Input should be 'auto'"),
        ("    - sample_rat: 1\n", "unknown key 'sample_rat': did you mean 'sample_rate'?"),
    ],
)
def test_mistakes_name_the_line_and_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("drift:\n  subjects:\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert says in str(caught.value)


def test_a_webhook_url_must_be_http(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("drift:\n  webhook: {url: 'ftp://x'}\n")
    with pytest.raises(ConfigError, match=r"drift.webhook.url: must be an http:// or https://"):
        load_config(path)


def test_each_setting_comes_from_the_first_entry_that_matches_and_sets_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "drift:\n"
        "  subjects:\n"
        "    - {prompt: triage@v2, current: {rows: 50}}\n"
        "    - {prompt: triage, sample_rate: 0.5, current: {window: 1h}}\n"
        "    - {model: churn, min_rows: 30}\n"
        "    - {sample_rate: 0.1, current: {rows: 500}}\n"
    )
    section = load_config(path).drift
    v2 = resolve(section, for_call("gpt", "triage", "v2"))
    assert (v2.sample_rate, v2.current_rows, v2.current_window_s) == (0.5, 50, 3600)
    v1 = resolve(section, for_call("gpt", "triage", "v1"))
    assert (v1.sample_rate, v1.current_rows) == (0.5, 500)
    churn = resolve(section, classic("churn", 2))
    assert (churn.sample_rate, churn.min_rows, churn.current_rows) == (0.1, 30, 500)
    plain = resolve(section, for_call("gpt", None, None))
    assert (plain.sample_rate, plain.min_rows, plain.reference_rows) == (0.1, 100, 1000)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "drift:\n  subjects:\n    - current: {rows: 5000}\n  retention: {rows: 1000}\n",
            "drift: subjects[0].current.rows: 5000 is more than the 1000 samples per subject "
            "retention.rows keeps",
        ),
        (
            "drift:\n  subjects:\n    - current: {window: 60d}\n",
            "subjects[0].current.window: 60d is longer than retention.age (30d) keeps samples",
        ),
        ("drift:\n  retention: {age: 1w}\n", "drift.retention.age: must look like"),
        ("drift:\n  retention: {rows: 10}\n", "drift.retention.rows: Input should be greater"),
        (
            "gateway:\n  prediction_sample_rate: 0.1\n",
            "gateway: prediction_sample_rate moved to drift monitoring: a classic model's calls "
            "are sampled at its drift.subjects entry's sample_rate",
        ),
    ],
)
def test_retention_must_keep_what_the_windows_need(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert says in str(caught.value)


def test_retention_defaults_bound_every_subject(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("drift:\n  retention: {age: null}\n")
    retention = load_config(path).drift.retention
    assert (retention.rows, retention.age_seconds()) == (100_000, None)

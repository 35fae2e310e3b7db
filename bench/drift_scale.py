"""How long drift takes at scale, on a SQLite file as the gateway keeps it:

1. A classic model's features: `--rows` logged samples (10 features and a prediction) against
   the training statistics its registry version carries; the figure is one comparison, from
   reading the samples to the verdict (writing them, and building the reference, are timed
   apart).
2. Texts: `--texts` sampled calls' inputs, half the reference and half the current window,
   embedded with the bundled all-MiniLM-L6-v2 (timed apart) and compared (domain classifier,
   centroid distance, MMD).

    .venv/bin/python -m bench.drift_scale [--rows 100000] [--texts 10000] [--skip-texts]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from gateway.core.drift_config import DriftSection
from gateway.drift.reference import REGISTRY_KEY, build_reference
from gateway.drift.service import Drift
from gateway.drift.subjects import classic, for_call
from gateway.providers.local import SentenceEmbedder
from gateway.registry.spec import VersionSpec
from gateway.registry.store import RegistryStore
from gateway.store.db import make_engine, migrate

WORDS = (  # noqa: SIM905 (a sentence reads better than 35 quoted words)
    "invoice refund plan charge card account login password shipping order delivery late "
    "broken screen battery upgrade cancel renew discount coupon receipt address email phone "
    "support agent manager weekend monday urgent question billing tax export report"
).split()


def features(rng: np.random.Generator, rows: int, shift: float) -> dict[str, Any]:
    return {
        "age": rng.normal(40 + 5 * shift, 12, rows),
        "income": rng.lognormal(10.5 + shift / 5, 0.6, rows),
        "tenure_days": rng.gamma(2.0, 200, rows),
        "score": rng.uniform(0, 1 + shift / 3, rows),
        "visits": rng.poisson(12 + 3 * shift, rows).astype(float),
        "children": rng.integers(0, 4, rows).astype(float),
        "plan": rng.choice(["free", "pro", "team"], rows, p=[0.5, 0.3, 0.2]),
        "country": rng.choice([f"c{i}" for i in range(12)], rows),
        "channel": rng.choice([f"ch{i}" for i in range(50)], rows),
        "prediction": rng.choice(["stay", "churn"], rows, p=[0.8 - shift / 10, 0.2 + shift / 10]),
    }


def import_statistics() -> None:
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    from gateway.drift import monitor  # noqa: F401


def timed(label: str, action: Any) -> Any:
    """Wall time, and this process's CPU time (the figure a busy machine moves least)."""
    started, cpu = time.perf_counter(), time.process_time()
    found = action()
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    print(f"  {label}: {wall:.2f} s ({used:.2f} s of CPU)", flush=True)
    return found


def classic_features(folder: Path, rows: int) -> None:
    engine = make_engine(f"sqlite:///{folder / 'classic.db'}")
    migrate(engine)
    rng = np.random.default_rng(0)
    print(f"classic model, {rows:,} logged rows of 10 features and a prediction:")
    training = features(rng, rows, 0.0)
    reference = timed(
        f"training statistics from {rows:,} rows (once, when the version is registered)",
        lambda: build_reference(training, source="training data").to_json(),
    )
    registry = RegistryStore(engine)
    spec = VersionSpec(alias="churn", kind="classic", metadata={REGISTRY_KEY: reference})
    subject = classic(
        "churn", registry.register("churn", spec, aliases={"churn"}, actor="b").version
    )
    section = DriftSection.model_validate(
        {"subjects": [{"current": {"rows": rows}, "embeddings": False}]}
    )
    parts = Drift.build(section, engine, registry, None)
    served = features(rng, rows, 0.3)
    start = datetime.now(UTC) - timedelta(hours=1)
    samples = [
        {
            "subject": subject.id,
            "kind": "features",
            "created_at": start + timedelta(milliseconds=i),
            "alias": "churn",
            "values": {k: v[i].item() for k, v in served.items()},
        }
        for i in range(rows)
    ]

    def log() -> None:
        for first in range(0, rows, 5000):
            parts.store.add_samples(samples[first : first + 5000])

    timed("writing the samples (the sampler's writer does this as calls come)", log)
    timed("importing scipy and scikit-learn (once per process)", import_statistics)
    evaluation = timed(
        "one comparison: read the window, columns, every test, the report stored",
        lambda: parts.monitor.evaluate(subject),
    )
    report = evaluation.report
    print(f"  -> {report.state}, {len(report.drifted_columns)}/{report.columns_judged} drifted")


def texts(folder: Path, count: int) -> None:
    engine = make_engine(f"sqlite:///{folder / 'texts.db'}")
    migrate(engine)
    rng = np.random.default_rng(1)
    half = count // 2
    section = DriftSection.model_validate(
        {"subjects": [{"reference": {"rows": half}, "current": {"rows": half}}]}
    )
    embedder = SentenceEmbedder()
    seconds = {"embedding": 0.0, "embedding cpu": 0.0}

    def embed(batch: list[str]) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        vectors = embedder.embed(batch)[0]
        seconds["embedding"] += time.perf_counter() - started
        seconds["embedding cpu"] += time.process_time() - cpu
        return vectors

    timed("loading the embedding model", embedder.load)
    parts = Drift.build(section, engine, None, embed)
    subject = for_call("support-bot", None, None)
    start = datetime.now(UTC) - timedelta(hours=1)
    samples = []
    for i in range(count):
        words = rng.choice(WORDS[: 24 if i < half else len(WORDS)], rng.integers(6, 14))
        samples.append(
            {
                "subject": subject.id,
                "kind": "llm",
                "created_at": start + timedelta(milliseconds=i),
                "alias": "support-bot",
                "values": {"error": False},
                "input_text": f"{i}: " + " ".join(words),
            }
        )
    parts.store.add_samples(samples)
    print(f"texts, {count:,} sampled inputs ({half:,} reference, {half:,} current):")
    started, cpu = time.perf_counter(), time.process_time()
    evaluation = parts.monitor.evaluate(subject)
    total, used = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"  embedding {count:,} texts (all-MiniLM-L6-v2 on the CPU): {seconds['embedding']:.1f} s "
        f"({seconds['embedding cpu']:.1f} s of CPU)"
    )
    print(
        f"  everything else (reads, statistics, report): {total - seconds['embedding']:.2f} s "
        f"({used - seconds['embedding cpu']:.2f} s of CPU)"
    )
    [column] = [c for c in evaluation.report.columns if c.column == "input"]
    shown = ", ".join(f"{t.test} {t.statistic:.3f}" for t in column.tests if t.statistic)
    print(f"  -> input: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--skip-texts", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        classic_features(Path(folder), args.rows)
        if not args.skip_texts:
            texts(Path(folder), args.texts)


if __name__ == "__main__":
    main()

"""What drift sampling adds to a call on the request path, per call.

The pipeline does two things for drift: when a chat call is admitted, `Sampler.draw` (a dict
lookup by alias and prompt version, and one random draw when the subject has a rate; a drawn
call gets a `Sample` holding references); when its row is made, `Sampler.keep` for a drawn
call (a deque append). A drawn stream also has its events read as they pass. A classic
model's call, once predicted, is drawn (`draw_prediction`: the same lookup and draw) and a
drawn one's tensors kept by reference (`keep_prediction`: a deque append). This times
those steps in-process, as the request path calls them, at several rates, with a config of a
few `drift.subjects` entries; the median of several rounds is reported (this machine's
neighbours come and go).

    .venv/bin/python -m bench.drift_sampling [--calls 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.classic.tensors import Output, Tensor
from gateway.core.drift_config import DriftSection
from gateway.drift.sampler import Sampler

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
ROW: dict[str, Any] = {"created_at": datetime.now(UTC), "status": 200}
CHUNK = orjson.dumps(
    {"choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}]}
)
EVENTS = [b"data: " + CHUNK + b"\n\n"] * 5 + [b"data: [DONE]\n\n"]


def sampler(rate: float) -> Sampler:
    section = DriftSection.model_validate(
        {
            "subjects": [
                {"prompt": "support-triage", "sample_rate": 0.5},
                {"model": "claude", "sample_rate": 0.2},
                {"prompt": "summarize", "model": "gpt-4o", "sample_rate": 1.0},
                {"sample_rate": rate},
            ]
        }
    )
    found = Sampler(section, None, queue_limit=10**9)
    found.on = True  # as when any subject samples, even at rate 0 here
    return found


def per_call_ns(rate: float, calls: int) -> float:
    """draw + keep for `calls` calls, as the pipeline runs them; the queue is emptied every
    1,000 calls, as the writer empties it every second (its work is off the request path and
    not counted)."""
    chosen = sampler(rate)
    draw, keep = chosen.draw, chosen.keep
    spent = 0
    for _ in range(calls // 1000):
        started = time.perf_counter_ns()
        for _ in range(1000):
            sample = draw("gpt-4o-mini", "bench", "3f2a9c01b7de", BODY)
            if sample is not None:
                keep(sample, ROW)
        spent += time.perf_counter_ns() - started
        chosen._queue.clear()
    return spent / (calls // 1000 * 1000)


FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
INPUTS = [Tensor("input-0", "FP32", (1, 4), [6.8, 2.8, 4.8, 1.4])]
OUTPUTS = [Output("predict", "INT64", [1], [1]), Output("predict_proba", "FP64", [1, 3], [0, 1, 0])]


def predict_ns(rate: float, calls: int) -> float:
    """draw_prediction + keep_prediction for `calls` infer calls, as Pipeline.predict runs
    them (the queue emptied every 1,000 calls, as the writer does every second)."""
    chosen = sampler(0.0)
    chosen.section.subjects[0].model = "iris"  # the example model's entry, at this rate
    chosen.section.subjects[0].prompt = None
    chosen.section.subjects[0].sample_rate = rate
    draw, keep = chosen.draw_prediction, chosen.keep_prediction
    spent = 0
    for _ in range(calls // 1000):
        started = time.perf_counter_ns()
        for _ in range(1000):
            subject = draw("iris", "1")
            if subject is not None:
                keep(subject, "iris", 1, FEATURES, INPUTS, OUTPUTS)
        spent += time.perf_counter_ns() - started
        chosen._predictions.clear()
    return spent / (calls // 1000 * 1000)


def stream_ns(calls: int) -> float:
    """Reading a drawn stream's six events (five content chunks and [DONE])."""
    chosen = sampler(1.0)
    started = time.perf_counter_ns()
    for _ in range(calls):
        sample = chosen.draw("gpt-4o-mini", None, None, BODY)
        assert sample is not None
        sample.observe(EVENTS)
    return (time.perf_counter_ns() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"drift sampling on the request path, median of {args.rounds} rounds:")
    for rate in (0.0, 0.01, 0.1, 1.0):
        figures = [per_call_ns(rate, args.calls) for _ in range(args.rounds)]
        print(f"  rate {rate:<4}: {statistics.median(figures) / 1000:.3f} µs per call")
    for rate in (0.0, 0.1, 1.0):
        figures = [predict_ns(rate, args.calls) for _ in range(args.rounds)]
        print(f"  infer, rate {rate:<4}: {statistics.median(figures) / 1000:.3f} µs per call")
    figures = [stream_ns(args.calls // 10) for _ in range(args.rounds)]
    print(f"  a drawn stream, 6 events read: {statistics.median(figures) / 1000:.3f} µs per call")


if __name__ == "__main__":
    main()

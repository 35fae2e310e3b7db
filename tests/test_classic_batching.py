"""Adaptive batching: concurrent calls to one version share one predict, and get their own
rows back; a failing batch is predicted call by call, so a bad call fails alone."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.classic.batching import Batcher
from gateway.classic.tensors import Output, Tensor
from tests.conftest import MASTER_KEY, GatewayFactory
from tests.fakes.classic_models import BatchRecorder
from tests.test_classic_serving import artifact_body, label, ready, register, until

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def rows(*values: float) -> list[Tensor]:
    return [Tensor("x", "FP64", (len(values), 1), list(values))]


async def doubled(inputs: list[Tensor], outputs: list[str]) -> list[Output]:
    """A model's predict: one output row per input row; a negative value is refused."""
    values = list(inputs[0].data)
    if any(v < 0 for v in values):
        raise ValueError("negative")
    seen.append(len(values))
    return [Output("y", "FP64", [len(values)], [v * 2 for v in values])]


seen: list[int] = []


async def test_concurrent_calls_share_one_predict_and_get_their_rows() -> None:
    seen.clear()
    batcher = Batcher(doubled, max_batch_size=8, max_batch_time=0.05)
    answers = await asyncio.gather(
        batcher(rows(1), ["y"]), batcher(rows(2, 3), ["y"]), batcher(rows(4), ["y"])
    )
    assert seen == [4]
    assert [a[0].data for a in answers] == [[2], [4, 6], [8]]
    assert [a[0].shape for a in answers] == [[1], [2], [1]]


async def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_next() -> None:
    seen.clear()
    batcher = Batcher(doubled, max_batch_size=2, max_batch_time=30)
    answers = await asyncio.wait_for(
        asyncio.gather(*(batcher(rows(v), ["y"]) for v in (1, 2, 3, 4))), 10
    )
    assert seen == [2, 2]  # two full batches: neither waited for the 30 s window
    assert [a[0].data for a in answers] == [[2], [4], [6], [8]]


async def test_a_bad_call_fails_alone() -> None:
    seen.clear()
    batcher = Batcher(doubled, max_batch_size=8, max_batch_time=0.05)
    good, bad = await asyncio.gather(
        batcher(rows(1), ["y"]), batcher(rows(-1), ["y"]), return_exceptions=True
    )
    assert isinstance(good, list)
    assert good[0].data == [2]
    assert isinstance(bad, ValueError)


async def test_only_alike_calls_are_joined() -> None:
    seen.clear()
    batcher = Batcher(doubled, max_batch_size=8, max_batch_time=0.05)
    wide = [Tensor("x", "FP64", (1, 2), [1, 2])]
    await asyncio.gather(batcher(rows(1), ["y"]), batcher(wide, ["y"]), batcher(rows(2), ["z"]))
    assert sorted(seen) == [1, 1, 2]  # three kinds: three predicts


def batch_sizes(
    gateway: GatewayFactory, folder: Path, info: dict[str, Any], calls: int
) -> list[int]:
    """Serves a BatchRecorder model with `info` as its model_info, sends `calls` one-row
    infers at once, and returns the rows each predict got."""
    artifact = folder / "batched.pkl"
    artifact.write_bytes(pickle.dumps(BatchRecorder()))
    model = {"model_name": "batched", "litellm_params": {"model": "registry/batched"}}
    base = gateway({"model_list": [{**model, "model_info": info}]})
    body = artifact_body("batched", artifact, "pickle", trusted=True)
    label(base, register(base, body, "batched"), "batched")
    until(lambda: ready(base, "batched").status_code == 200)
    BatchRecorder.sizes.clear()

    async def send() -> list[httpx.Response]:
        tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]}
        url = f"{base}/v2/models/batched/infer"
        async with httpx.AsyncClient(headers=ADMIN, timeout=30) as client:
            return await asyncio.gather(
                *(client.post(url, json={"inputs": [tensor]}) for _ in range(calls))
            )

    answers = asyncio.run(send())
    assert [a.json()["outputs"][0]["data"] for a in answers] == [[3.0]] * calls
    return list(BatchRecorder.sizes)


@pytest.mark.parametrize("batching", [False, True])
def test_served_calls_are_batched_when_configured(
    gateway: GatewayFactory, tmp_path: Path, batching: bool
) -> None:
    info = {"max_batch_size": 4, "max_batch_time": 1.0} if batching else {}
    sizes = batch_sizes(gateway, tmp_path, info, calls=4)
    assert sizes == ([4] if batching else [1, 1, 1, 1])

"""What the benchmark runs: request modes, feature configurations, and the files they need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

MESSAGE = "Say hello to the benchmark, please."
CHAT_PATH = "/v1/chat/completions"
EMBED_PATH = "/v1/embeddings"
INFER_PATH = "/v2/models/bench-iris/infer"
# One row of the example classic model's features (bench.ab --mode infer).
INFER_ROW = [[6.8, 2.8, 4.8, 1.4]]
# The share of the example model's calls drift samples in the infer mode (the default
# config's rate for it).
INFER_SAMPLE_RATE = 0.1


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    path: str
    upstream_model: str  # what the direct run asks the fake upstream for
    alias: str  # what the gateway run asks the gateway for
    stream: bool = False
    direct_as: str | None = None  # reuse another mode's direct figures (same upstream call)

    def body(self, model: str) -> str:
        payload: dict[str, Any]
        if self.name == "infer":
            tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": INFER_ROW}
            return orjson.dumps({"inputs": [tensor]}).decode()
        if self.name == "embed":
            payload = {"model": model, "input": MESSAGE}
        elif self.name == "prompt":
            payload = {
                "model": model,
                "messages": [],
                "prompt": {"name": "bench", "variables": {"x": "hi"}},
            }
        else:
            payload = {"model": model, "messages": [{"role": "user", "content": MESSAGE}]}
        if self.stream:
            payload |= {"stream": True, "stream_options": {"include_usage": True}}
        return orjson.dumps(payload).decode()


MODES = {
    "json": Mode("json", CHAT_PATH, "gpt-4o-mini", "bench"),
    "stream": Mode("stream", CHAT_PATH, "gpt-4o-mini", "bench", stream=True),
    "embed": Mode("embed", EMBED_PATH, "text-embedding-3-small", "bench-embed"),
    # The upstream sees an ordinary chat call, so the direct figures are json's.
    "prompt": Mode("prompt", CHAT_PATH, "gpt-4o-mini", "prompt", direct_as="json"),
    # A classic model in process (bench.ab only: `gateway registry train-example` first).
    "infer": Mode("infer", INFER_PATH, "", "bench-iris"),
}
BASE_MODES = ("json", "stream", "embed")

KeyKind = Literal["master", "plain", "limited"]


@dataclass(frozen=True, slots=True)
class Features:
    name: str
    key: KeyKind
    redis: bool = False
    postgres: bool = False
    prompt: bool = False
    tracing: bool = False

    def modes(self) -> tuple[str, ...]:
        return (*BASE_MODES, "prompt") if self.prompt else BASE_MODES

    def describe(self) -> dict[str, str]:
        limited = self.key == "limited"
        counters = "redis" if self.redis else "in process"
        return {
            "auth": {
                "master": "master key (no key lookup)",
                "plain": "virtual key",
                "limited": "virtual key",
            }[self.key],
            "rate_limits": f"RPM/TPM, {counters}" if limited else "off",
            "budget": f"USD budget, {counters}" if limited else "off",
            "cost": "on",
            "request_log": "postgresql" if self.postgres else "sqlite (always on)",
            "prompt_by_name": "prompt mode" if self.prompt else "not exercised",
            "tracing": "OTLP/HTTP to a loopback receiver" if self.tracing else "off",
            "metrics": "Prometheus (always on)",
        }


CONFIGS = {
    config.name: config
    for config in (
        Features("baseline", "master"),
        Features("auth", "plain"),
        Features("limits", "limited"),
        Features("redis", "limited", redis=True),
        Features("postgres", "limited", postgres=True),
        Features("tracing", "limited", tracing=True),
        Features("all-on", "limited", redis=True, postgres=True, prompt=True, tracing=True),
    )
}

KEY_REQUESTS: dict[KeyKind, dict[str, Any]] = {
    "plain": {"name": "bench-auth"},
    "limited": {
        "name": "bench-limits",
        "team": "bench",
        "rpm_limit": 100_000_000,
        "tpm_limit": 2_000_000_000,  # fits PostgreSQL INTEGER
        "max_budget": 1_000_000.0,
        "budget_duration": "1d",
    },
}

PROMPT_FILE = """---
description: The benchmark's prompt, called by name.
model: bench
input:
  schema:
    x: string
---
{{role "user"}}
Say {{x}}
"""


def write_gateway_files(directory: Path, upstream: str, classic: bool = False) -> tuple[Path, Path]:
    """The gateway config (aliases `bench` and `bench-embed`; with `classic`, `bench-iris`
    served from the registry and a drift sample of its calls) and a prompts dir with
    `bench`."""
    model_list = [
        {
            "model_name": "bench",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream},
        },
        {
            "model_name": "bench-embed",
            "litellm_params": {"model": "openai/text-embedding-3-small", "api_base": upstream},
        },
    ]
    sections: dict[str, Any] = {"model_list": model_list}
    if classic:
        model_list.append(
            {"model_name": "bench-iris", "litellm_params": {"model": "registry/iris"}}
        )
        sections["drift"] = {"subjects": [{"model": "iris", "sample_rate": INFER_SAMPLE_RATE}]}
    config = directory / "bench.yaml"
    config.write_bytes(orjson.dumps(sections))  # JSON is valid YAML
    prompts = directory / "prompts"
    prompts.mkdir(exist_ok=True)
    (prompts / "bench.prompt").write_text(PROMPT_FILE, encoding="utf-8")
    return config, prompts

"""Runs a suite through the gateway (in process or at a URL), so calls are priced and logged.

Responses are cached on disk by target version, variables, messages and options, so a rerun
of an unchanged suite makes no upstream calls; failures are never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.evals.retrieval import with_retrieved
from gateway.evals.scoring import Judged, Status, judge_case
from gateway.evals.scripts import ScriptProblem, run_transform
from gateway.evals.suite import CaseSpec, Suite, Target
from gateway.evals.verdicts import Embed, EvalContext, Judge


class TargetError(Exception):
    """The target cannot be called (unknown prompt or label, gateway unreachable...)."""


@dataclass(slots=True)
class Answer:
    output: str
    latency_ms: float
    cost_usd: float
    tool_calls: list[dict[str, Any]] | None = None
    cached: bool = False
    finish_reason: str | None = None


@dataclass(slots=True)
class CaseResult:
    id: str
    vars: dict[str, Any]
    status: Status
    score: float
    output: str | None
    latency_ms: float | None
    cost_usd: float | None
    cached: bool
    error: str | None
    assertions: list[dict[str, Any]] = field(default_factory=list)
    named_scores: dict[str, float] = field(default_factory=dict)
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunResult:
    suite: str
    target: str
    version: str  # what answered: prompt name@version, the model alias, registry:NAME@N
    cases: list[CaseResult]
    started_at: str
    finished_at: str

    @property
    def total(self) -> int:
        return len(self.cases)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.cases if c.status == status)

    @property
    def pass_rate(self) -> float:
        return self.count("PASS") / self.total if self.total else 0.0

    @property
    def mean_score(self) -> float:
        return statistics.fmean(c.score for c in self.cases) if self.cases else 0.0

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd or 0.0 for c in self.cases)

    @property
    def metrics(self) -> dict[str, float]:
        """Each named score (`metric:`) averaged over the cases that have it."""
        scores: dict[str, list[float]] = {}
        for case in self.cases:
            for name, score in case.named_scores.items():
                scores.setdefault(name, []).append(score)
        return {name: round(statistics.fmean(values), 4) for name, values in sorted(scores.items())}

    @property
    def p50_latency_ms(self) -> float | None:
        latencies = [c.latency_ms for c in self.cases if c.latency_ms is not None and not c.cached]
        return statistics.median(latencies) if latencies else None

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "version": self.version,
            "cases": self.total,
            "passed": self.count("PASS"),
            "failed": self.count("FAIL"),
            "errors": self.count("ERROR"),
            "pass_rate": round(self.pass_rate, 4),
            "mean_score": round(self.mean_score, 4),
            "cost_usd": round(self.cost_usd, 10),
            "p50_latency_ms": self.p50_latency_ms,
            "metrics": self.metrics,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            **self.summary(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "results": [asdict(c) for c in self.cases],
        }


@dataclass(frozen=True, slots=True)
class Resolved:
    """A target pinned at run start: what the run records, and what each call asks for."""

    version: str  # prompt name@version, the model alias, or registry:NAME@NUMBER
    model: str  # the alias to call ("prompt" for a prompt, which names its own model)
    prompt_version: str | None = None


class GatewayClient:
    """The few gateway calls a run needs, over any httpx transport."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.http = client
        self.headers = {"authorization": f"Bearer {key}"}

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self.http.post(path, json=body, headers=self.headers, timeout=300)
        except httpx.HTTPError as exc:
            raise TargetError(f"gateway unreachable: {exc}") from None

    async def _get(self, target: Target, path: str) -> dict[str, Any]:
        try:
            response = await self.http.get(path, headers=self.headers)
        except httpx.HTTPError as exc:
            raise TargetError(f"gateway unreachable: {exc}") from None
        if response.status_code != 200:
            raise TargetError(f"{target}: {_message(response)}")
        found: dict[str, Any] = response.json()
        return found

    async def registry_version(self, target: Target, name: str, number: str) -> dict[str, Any]:
        """A registry version as GET /v1/registry/models/{name}/versions/{number} shows it."""
        return await self._get(target, f"/v1/registry/models/{name}/versions/{number}")

    async def resolve(self, target: Target, classic: bool = False) -> Resolved:
        """The version a run pins; a classic registry version only for a model test (it
        answers /v2 infer, not the chat calls cases make)."""
        if target.kind == "model":
            return Resolved(target.name, target.name)
        if target.kind == "registry":
            # Pinned once: a label that moves mid-run must not mix two versions' answers.
            ref = target.ref or "latest"
            found = await self._get(target, f"/v1/registry/models/{target.name}/versions/{ref}")
            pinned = Target("registry", target.name, str(found["version"]))
            if (found.get("kind") == "classic") != classic:
                raise TargetError(
                    f"{pinned} is a classic version: test it with a model test (data: and "
                    f"metrics: in the suite, see the README's 'Model tests of classic versions')"
                    if not classic
                    else f"{pinned} is an LLM version: a model test (data:) targets a classic "
                    f"version, served over /v2"
                )
            return Resolved(str(pinned), str(found["alias"]))
        info = await self._get(target, f"/v1/prompts/{target.name}")
        ref = target.ref or "production"
        label = info["labels"].get(ref)
        if label is None:
            versions = await self.http.get(
                f"/v1/prompts/{target.name}/versions/{ref}", headers=self.headers
            )
            if versions.status_code != 200:
                known = ", ".join(sorted(info["labels"]))
                raise TargetError(f"{target}: no label or version {ref!r} (labels: {known})")
            version = ref
        elif "version" not in label:
            raise TargetError(f"{target}: label {ref!r} splits traffic; evaluate a version")
        else:
            version = str(label["version"])
        return Resolved(f"{target.name}@{version}", "prompt", prompt_version=version)

    async def ask(
        self, target: Target, resolved: Resolved, case: CaseSpec, options: dict[str, Any]
    ) -> Answer:
        body: dict[str, Any] = {**options, "messages": list(case.messages)}
        body["model"] = resolved.model
        if resolved.prompt_version is not None:
            body["prompt"] = {
                "name": target.name,
                "version": resolved.prompt_version,
                "variables": case.vars,
            }
        else:
            if not body["messages"]:
                text = case.vars.get("input", json.dumps(case.vars))
                body["messages"] = [{"role": "user", "content": str(text)}]
        started = time.perf_counter()
        response = await self._post("/v1/chat/completions", body)
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise TargetError(f"{response.status_code}: {_message(response)}")
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
        return Answer(
            output=message.get("content") or "",
            latency_ms=latency,
            cost_usd=float(response.headers.get("x-gateway-cost-usd", "0")),
            tool_calls=message.get("tool_calls"),
            finish_reason=choice.get("finish_reason"),
        )

    async def judge(self, alias: str, prompt: str) -> str:
        body = {"model": alias, "temperature": 0, "messages": [{"role": "user", "content": prompt}]}
        response = await self._post("/v1/chat/completions", body)
        if response.status_code != 200:
            raise TargetError(f"judge {alias}: {_message(response)}")
        return str(response.json()["choices"][0]["message"].get("content") or "")

    async def embed(self, alias: str, texts: list[str]) -> list[list[float]]:
        body = {"model": alias, "input": texts, "encoding_format": "float"}
        response = await self._post("/v1/embeddings", body)
        if response.status_code != 200:
            raise TargetError(f"embeddings {alias}: {_message(response)}")
        return [item["embedding"] for item in response.json()["data"]]

    async def search(self, collection: str, text: str, limit: int) -> list[dict[str, Any]]:
        body = {"query": text, "limit": limit}
        response = await self._post(f"/v1/indexes/{collection}/search", body)
        if response.status_code != 200:
            raise TargetError(f"retrieval from {collection}: {_message(response)}")
        hits: list[dict[str, Any]] = response.json()["data"]
        return hits

    async def store_run(self, record: dict[str, Any]) -> str | None:
        response = await self._post("/v1/evals/runs", record)
        if response.status_code != 200:
            raise TargetError(f"could not store the run: {_message(response)}")
        run_id: str | None = response.json().get("id")
        return run_id


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


class AnswerCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @staticmethod
    def key(version: str, case: CaseSpec, options: dict[str, Any], repeat: int) -> str:
        material = {
            "version": version,
            "vars": case.vars,
            "messages": case.messages,
            "options": options,
            "repeat": repeat,
        }
        return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def get(self, key: str) -> Answer | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        data = orjson.loads(path.read_bytes())
        return Answer(**{**data, "cached": True})

    def put(self, key: str, answer: Answer) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{key}.tmp"
        tmp.write_bytes(orjson.dumps(asdict(answer)))
        tmp.rename(self.directory / f"{key}.json")


async def judge_answer(case: CaseSpec, context: EvalContext) -> Judged:
    """A case's verdict on one answer: its `options.transform` first (ScriptProblem when that
    fails), then its assertions."""
    if case.options.transform is not None:
        context = context.with_output(await run_transform(case.options.transform, context))
    return await judge_case(case.asserts, context, case.threshold)


def _errored(case: CaseSpec, case_id: str, answer: Answer, problem: str) -> CaseResult:
    return CaseResult(
        case_id,
        case.vars,
        "ERROR",
        0.0,
        answer.output,
        answer.latency_ms,
        0.0 if answer.cached else answer.cost_usd,
        answer.cached,
        problem,
        description=case.description,
        metadata=case.metadata,
    )


def case_count(suite: Suite) -> int:
    """How many results a run of the suite has: each case, `repeat` times."""
    return len(suite.cases) * suite.spec.repeat


async def run_suite(
    suite: Suite,
    client: GatewayClient,
    target: Target,
    cache: AnswerCache,
    on_case: Callable[[CaseResult, float], None] | None = None,
) -> RunResult:
    """Runs every case; `on_case` hears of each one as it finishes (in finishing order, with
    the seconds it took, assertions included), so a caller can show progress while the
    results keep the suite's order."""
    started = datetime.now(UTC).isoformat()
    resolved = await client.resolve(target)
    options = suite.spec.options
    gate = asyncio.Semaphore(suite.spec.concurrency)
    judge_alias, embed_alias = suite.spec.judge, suite.spec.embedding_model

    tools = options.get("tools")
    offered = tools if isinstance(tools, list) else None

    def judge_with(alias: str | None) -> Judge:
        async def judge(prompt: str) -> str:
            if alias is None:
                raise TargetError("llm-rubric needs `judge: <model alias>` in the suite")
            return await client.judge(alias, prompt)

        return judge

    def embed_with(alias: str) -> Embed:
        async def embed(texts: list[str]) -> list[list[float]]:
            return await client.embed(alias, texts)

        return embed

    async def one(case: CaseSpec, repeat: int) -> CaseResult:
        began = time.perf_counter()
        result = await judged(case, repeat)
        if on_case is not None:
            on_case(result, time.perf_counter() - began)
        return result

    async def judged(case: CaseSpec, repeat: int) -> CaseResult:
        case_id = str(case.id) + (f"#{repeat + 1}" if suite.spec.repeat > 1 else "")
        if suite.spec.retrieve is not None:  # before the cache key: it depends on what is found
            try:
                case = await with_retrieved(suite.spec.retrieve, case, client)
            except TargetError as exc:
                error = str(exc)
                return CaseResult(case_id, case.vars, "ERROR", 0.0, None, None, None, False, error)
        key = cache.key(resolved.version, case, options, repeat)
        async with gate:
            answer = cache.get(key)
            if answer is None:
                try:
                    answer = await client.ask(target, resolved, case, options)
                except TargetError as exc:
                    return CaseResult(
                        case_id, case.vars, "ERROR", 0.0, None, None, None, False, str(exc)
                    )
                cache.put(key, answer)
            context = EvalContext(
                output=answer.output,
                vars=case.vars,
                latency_ms=answer.latency_ms,
                cost_usd=answer.cost_usd,
                cached=answer.cached,
                tool_calls=answer.tool_calls,
                judge=judge_with(case.options.provider or judge_alias),
                embed=embed_with(embed_alias),
                tools=offered,
                finish_reason=answer.finish_reason,
                metadata=case.metadata,
                description=case.description,
                judge_with=judge_with,
                embed_with=embed_with,
            )
            try:
                judged = await judge_answer(case, context)
            except ScriptProblem as exc:
                return _errored(case, case_id, answer, f"options.transform: {exc}")
        return CaseResult(
            id=case_id,
            vars=case.vars,
            status=judged.status,
            score=judged.score,
            output=answer.output,
            latency_ms=answer.latency_ms,
            cost_usd=0.0 if answer.cached else answer.cost_usd,
            cached=answer.cached,
            error=None,
            assertions=judged.rows,
            named_scores=judged.named_scores,
            description=case.description,
            metadata=case.metadata,
        )

    jobs = [one(case, r) for case in suite.cases for r in range(suite.spec.repeat)]
    results = list(await asyncio.gather(*jobs))
    return RunResult(
        suite.name, str(target), resolved.version, results, started, datetime.now(UTC).isoformat()
    )

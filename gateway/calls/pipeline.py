"""The call pipeline: admit -> route (a hook per attempt) -> settle -> record, for every kind
of call. Adapters (the OpenAI routes today; inference, batch lines and broker messages next)
parse their input into a Call, run it here, and encode what comes back.

Whatever happens after admission, the reservation is settled exactly once: to the real cost
when an answer came, to zero when none did (`settle` in `_route`, the one settle-on-failure).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.calls.checks import CHECKS, require_model
from gateway.calls.record import CallRecord
from gateway.calls.recovery import Continuation, StreamRecovery
from gateway.calls.tags import HEADER as TAGS_HEADER
from gateway.calls.tags import take_tags
from gateway.calls.token_cap import cap_callers_fields, cap_for_deployment
from gateway.calls.usage import reply_usage
from gateway.classic.serving import ServedVersion
from gateway.classic.tensors import InferRequest
from gateway.core.errors import BadRequest, GatewayError, ModelNotFound, PermissionDenied
from gateway.drift.queries import QuerySampler
from gateway.drift.sampler import Sampler
from gateway.identity.auth import Caller
from gateway.metering.meter import Admission, Meter, prompt_tokens_sent
from gateway.metering.prices import PriceTable
from gateway.observability.call_log import CallLog
from gateway.observability.redact import redacted_body, redacted_json
from gateway.observability.traces import AttemptSpan
from gateway.prompts.calling import PromptRef, apply_prompt, history_of
from gateway.prompts.catalog import PromptCatalog
from gateway.prompts.context import auth_data
from gateway.prompts.render import PromptRenderer
from gateway.providers import Deployment, Provider, Reply, Stream, Usage
from gateway.providers.classic import ClassicProvider, Prediction, is_classic
from gateway.registry.llm_versions import LlmVersions, is_registry_ref
from gateway.routing.router import Routed, Router, Send

Kind = Literal["chat", "embeddings", "infer"]


@dataclass(slots=True)
class Call:
    """One call on its way through the pipeline."""

    kind: Kind
    body: dict[str, Any]  # what is sent upstream (after a prompt is applied)
    size: int  # the caller's body in bytes, for the worst-case token estimate
    caller: Caller
    record: CallRecord
    prompt: PromptRef | None = None
    chain: list[str] = field(default_factory=list)  # the alias and its allowed fallbacks
    admission: Admission | None = None
    logs_bodies: bool = False
    # Completion tokens per choice each attempt must set in the field its deployment takes:
    # the budget's cap, when the caller set no limit of its own.
    cap_per_attempt: int | None = None
    tags: list[str] | None = None  # for tag-based routing, when it is on
    # Infer calls: the model and version the path names (not the body), the decoded
    # tensors, and the registry version they were checked against before admission.
    alias: str | None = None
    version: str | None = None
    infer: InferRequest | None = None
    checked: ServedVersion | None = None
    recovers: bool = False  # a stream that breaks after it began is continued elsewhere
    continuation: Continuation | None = None  # how, once it is


def _rendered_chars(messages: list[dict[str, Any]], history: list[dict[str, Any]]) -> int:
    theirs = {id(m) for m in history}
    return sum(len(str(m.get("content", ""))) for m in messages if id(m) not in theirs)


def caller_auth(caller: Caller) -> dict[str, Any]:
    """What a prompt's template reads as `@auth`: the caller's key and team."""
    key, team = caller.key, caller.team
    team_id = team.id if team is not None else key.team if key is not None else None
    return auth_data(
        caller.key_id,
        key.name if key is not None else None,
        key.metadata if key is not None else None,
        team_id,
        team.metadata if team is not None else None,
    )


async def _chat(provider: Provider, deployment: Deployment, call: Call) -> Reply:
    return await provider.chat(deployment, call.body)


async def _open_stream(provider: Provider, deployment: Deployment, call: Call) -> Stream:
    return await provider.open_stream(deployment, call.body)


async def _open_continuation(provider: Provider, deployment: Deployment, call: Call) -> Stream:
    assert call.continuation is not None
    return await provider.open_stream(deployment, call.continuation.body_for(call.body, deployment))


async def _embeddings(provider: Provider, deployment: Deployment, call: Call) -> Reply:
    return await provider.embeddings(deployment, call.body)


async def _infer(provider: Provider, deployment: Deployment, call: Call) -> Prediction:
    if not isinstance(provider, ClassicProvider):  # a fallback to an LLM alias
        raise BadRequest(
            f"model {deployment.alias!r} is not a classic model: it cannot answer /v2 infer"
        )
    assert call.infer is not None
    return await provider.infer(deployment, call.infer, call.version, call.checked)


class Pipeline:
    def __init__(
        self,
        router: Router,
        meter: Meter,
        prices: PriceTable,
        prompts: PromptCatalog,
        renderer: PromptRenderer,
        call_log: CallLog,
        log_bodies: bool,
        sampler: Sampler,
        recovery: StreamRecovery | None = None,
        queries: QuerySampler | None = None,
        registry: LlmVersions | None = None,
    ) -> None:
        self.router = router
        self.meter = meter
        self.prices = prices
        self.prompts = prompts
        self.renderer = renderer
        self.call_log = call_log
        self.log_bodies = log_bodies
        self.traces_attempts = call_log.tracing is not None
        self.reads_tags = router.settings.enable_tag_filtering
        self.sampler = sampler
        self.recovery = recovery  # None: no model name recovers its streams
        # Query embeddings for index health's query drift; None when no collection is watched.
        self.queries = queries if queries is not None and queries.on else None
        self.registry = registry  # None: `registry/NAME@REF` names no model

    async def admit(self, call: Call, headers: Mapping[str, str] | None = None) -> None:
        """Checks the call and reserves its worst case against the caller's budgets and rate
        limits; raises the refusal. Nothing is reserved when it raises. `headers` are the
        request's, for what callers may say in one (tags for tag-based routing)."""
        record, caller, body = call.record, call.caller, call.body
        record.identify(caller)
        if call.prompt is not None:
            await self._apply_prompt(call)
            body = call.body
        alias = call.alias or require_model(body)
        record.alias = alias
        if call.kind == "infer":
            await self._admit_infer(call, alias, headers)
            return
        if self.registry is not None and is_registry_ref(alias):
            alias = record.alias = self._registry_alias(self.registry, call, alias)
        CHECKS[call.kind](body)
        if self.reads_tags:
            body, call.tags = take_tags(body, headers.get(TAGS_HEADER) if headers else None)
            call.body = body
        key = caller.key
        allowed = key.allows_model if key is not None and key.models else None
        # 404 for an unknown alias, before anything is reserved.
        call.chain = self.router.chain(alias, allowed, call.tags)
        if allowed is not None and not self.router.permits(alias, allowed):
            caller.check_model(alias)  # raises the refusal
        call.logs_bodies = self.log_bodies or (key is not None and key.log_bodies)
        if call.logs_bodies:
            record.request_body = redacted_json(body)
        call.admission = admission = await self.meter.admit(
            caller, call.chain, body, call.size, completion=call.kind == "chat"
        )
        if admission.cap is not None:
            # The reservation covers this many tokens only: the upstream must stop there.
            call.body = body = dict(body)
            if not cap_callers_fields(body, admission.cap.tokens):
                call.cap_per_attempt = admission.cap.tokens
        if self.sampler.on and call.kind == "chat":
            record.sample = self.sampler.draw(
                alias, record.prompt_name, record.prompt_version, call.body
            )

    def _registry_alias(self, registry: LlmVersions, call: Call, model: str) -> str:
        """The alias serving the registry version `model` names (a config model_name spelled
        `registry/...` is that model instead). The key must be allowed that alias, as it must
        to see the version in the registry's API."""
        names = self.router.names
        if model in names.exact or model in names.group_aliases:
            return model
        version = registry.resolve(model)
        call.record.model_version = version.ref  # also on the row of a refused call
        key = call.caller.key
        if (
            key is not None
            and key.models
            and not self.router.permits(version.alias, key.allows_model)
        ):
            raise PermissionDenied(
                f"Key {key.id} may not use model {model!r}: {version.ref} is served by "
                f"{version.alias!r}, which the key is not allowed (allowed: "
                f"{', '.join(key.models)}).",
                param="model",
                code="model_not_allowed",
            )
        if names.find(version.alias) is None and version.alias not in self.router.unavailable:
            raise ModelNotFound(
                f"The model {model!r} is {version.ref}, served by {version.alias!r}, which "
                f"this gateway's config does not serve: add it to model_list, or register a "
                f"version with an alias the config has.",
                param="model",
            )
        return version.alias

    def infer_target(self, caller: Caller, alias: str, tags: list[str] | None = None) -> list[str]:
        """The chain an infer call to `alias` routes over (it and its allowed fallbacks): a
        404 when it is not a classic model, a 403 when the key may not use it. Also asked
        before a bad body's 400, so an unknown model is a 404 whatever was sent."""
        key = caller.key
        allowed = key.allows_model if key is not None and key.models else None
        chain = self.router.chain(alias, allowed, tags)
        if not is_classic(self.router.deployments(alias)[0]):
            raise ModelNotFound(
                f"{alias!r} is not a classic model (it answers /v1/chat/completions or "
                f"/v1/embeddings); GET /v2/models/NAME describes a classic one",
                param="model",
            )
        if allowed is not None and not self.router.permits(alias, allowed):
            caller.check_model(alias)  # raises the refusal
        return chain

    async def _admit_infer(self, call: Call, alias: str, headers: Mapping[str, str] | None) -> None:
        """A classic model's call: the alias must be one (404), the key allowed it (403), the
        version it names ready (404/503) and the tensors fit its signature (400), before
        its predictions are reserved against the caller's budgets and limits. Tags for
        tag-based routing come in the header alone (the body is the protocol's)."""
        caller, request = call.caller, call.infer
        assert request is not None
        if self.reads_tags:
            call.tags = take_tags({}, headers.get(TAGS_HEADER) if headers else None)[1]
        call.chain = self.infer_target(caller, alias, call.tags)
        deployments = self.router.deployments(alias)
        key = caller.key
        classic = self.router.providers.classic
        local = next((d for d in deployments if d.provider == "registry"), None)
        if local is not None:  # in process: one registry model serves the alias
            served = classic.check_ready(local, call.version)
            call.record.model_version = served.ref  # also on the row of a refused call
            assert served.signature is not None  # a version without one never gets ready
            served.signature.check(request)
            call.checked = served
            if served.expectations is not None:
                found = served.expectations.count(request)
                if found is not None:  # counted on the row (and metrics), refused or not
                    call.record.feature_violations = {f: v.count for f, v in found.items()}
                    served.expectations.enforce(found)
        call.logs_bodies = self.log_bodies or (key is not None and key.log_bodies)
        if call.logs_bodies:
            call.record.request_body = redacted_json(call.body)
        call.admission = await self.meter.admit_predictions(caller, call.chain, request.rows)

    async def _apply_prompt(self, call: Call) -> None:
        ref = call.prompt
        assert ref is not None
        call.caller.check_prompt(ref.name)
        prompt = self.prompts.resolve(ref.name, ref.label, ref.version, ref.user)
        call.record.prompt_name, call.record.prompt_version = prompt.name, prompt.version
        history = history_of(call.body)
        caller = call.caller
        auth = caller_auth(caller) if "auth" in prompt.data_names else None
        messages = await self.renderer.render(prompt, ref.variables, ref.context, history, auth)
        # Rendered text counts toward the worst-case token estimate like the caller's own
        # (whose messages, placed among the rendered ones as they came, the body counted).
        call.size += _rendered_chars(messages, history)
        call.body = apply_prompt(call.body, prompt, messages)

    async def attempting(self, deployment: Deployment, call: Call) -> None:
        """The router's hook before each attempt."""
        record = call.record
        # So a failed call's row names the last deployment tried and how many were.
        record.deployment = deployment
        record.attempts += 1
        assert call.admission is not None
        await self.meter.admit_deployment(call.admission, deployment)
        if call.cap_per_attempt is not None:
            cap_for_deployment(call.body, call.cap_per_attempt, deployment)

    def attempted(
        self,
        deployment: Deployment,
        call: Call,
        started: float,
        seconds: float,
        error: GatewayError | None,
    ) -> None:
        """The router's hook after each attempt: the attempt becomes a span of its own."""
        if self.traces_attempts:
            record = call.record
            attempt = AttemptSpan(
                deployment.id,
                deployment.provider,
                started - record.started,
                seconds,
                error.type if error is not None else None,
            )
            if record.attempt_log is None:
                record.attempt_log = [attempt]
            else:
                record.attempt_log.append(attempt)

    async def _route(self, call: Call, send: Send[Call, Any]) -> Routed[Any]:
        router = self.router
        # An estimate, for the router's pre-call context check and usage-based routing.
        prompt = prompt_tokens_sent(call.body) if router.needs_prompt_tokens else 0
        try:
            routed = await router.call(call.chain, send, call, self, prompt, call.tags)
        except BaseException:
            await self.settle(call)  # nothing was priced: gives the whole reservation back
            raise
        record = call.record
        record.deployment = routed.deployment
        record.upstream_s = routed.upstream_seconds
        record.price_version = self.prices.version
        return routed

    async def complete(self, call: Call) -> Routed[Reply]:
        """A JSON answer (chat or embeddings), priced and settled."""
        routed = await self._route(call, _chat if call.kind == "chat" else _embeddings)
        reply: Reply = routed.value
        usage = reply.usage
        if usage is None and call.kind == "chat":
            # An upstream that reports no usage is still billed: counted, marked an estimate.
            usage = reply_usage(call.body, reply.body)
            call.record.estimated = True
        if call.logs_bodies:
            call.record.response_body = redacted_body(reply.body)
        if call.record.sample is not None:
            call.record.sample.reply = reply.body
        if self.queries is not None and call.kind == "embeddings":
            self.queries.offer(call.record.alias, call.record.key_id, call.body, reply.body)
        self.price(call, routed.deployment, usage, routed.upstream_seconds)
        await self.settle(call)
        return routed

    async def predict(self, call: Call) -> Routed[Prediction]:
        """An infer call's predictions, priced per row and settled; a sample of them kept
        for drift monitoring."""
        routed: Routed[Prediction] = await self._route(call, _infer)
        prediction, record = routed.value, call.record
        record.predictions = prediction.rows
        record.model_version = prediction.version_ref
        record.cost = self.prices.prediction_cost(routed.deployment, prediction.rows)
        await self.settle(call)
        sampler = self.sampler
        if sampler.on:  # drift: a drawn call's tensors kept by reference
            subject = sampler.draw_prediction(prediction.name, prediction.model_version)
            if subject is not None:
                assert call.infer is not None
                sampler.keep_prediction(
                    subject,
                    record.alias,
                    prediction.rows,
                    prediction.features,
                    call.infer.inputs,
                    prediction.outputs,
                )
        return routed

    async def open_stream(self, call: Call) -> Routed[Stream]:
        """An open stream; the relay settles it when it ends (see calls.streaming)."""
        call.record.stream = True
        routed: Routed[Stream] = await self._route(call, _open_stream)
        recovery = self.recovery
        if recovery is not None:
            alias = call.chain[0]
            if recovery.applies(alias, self.router.names.target(alias), call.body):
                call.recovers = True
                routed.value.keep_text()
        return routed

    async def continue_stream(self, call: Call, broken: Deployment) -> Routed[Stream]:
        """The continuation of a stream `broken` cut (call.body and call.continuation say
        what to ask), routed as a new call would be but never to `broken`."""
        router = self.router
        prompt = prompt_tokens_sent(call.body) if router.needs_prompt_tokens else 0
        return await router.call(
            call.chain, _open_continuation, call, self, prompt, call.tags, avoid=broken
        )

    def price(
        self, call: Call, deployment: Deployment, usage: Usage | None, seconds: float = 0.0
    ) -> None:
        """The call's cost from its usage (and its seconds upstream, for a deployment priced
        per second)."""
        record = call.record
        record.usage = usage
        record.cost = self.prices.cost(deployment, usage, seconds)
        if usage is not None and self.router.counts_usage:
            self.router.used(deployment, usage.prompt_tokens + usage.completion_tokens)

    async def settle(self, call: Call) -> None:
        """Settles the reservation to what the record says the call cost: zero when no answer
        came. Settling twice is a no-op."""
        if call.admission is not None:
            await self.meter.settle(call.admission, call.record.usage, call.record.cost)

    def finish(self, record: CallRecord, status: int) -> None:
        """The call's row, metrics and span, once its answer has ended."""
        row = record.row(status)
        self.call_log.record(row, record.traceparent, record.attempt_log)
        if record.sample is not None:
            self.sampler.keep(record.sample, row)

    @staticmethod
    def overhead_ms(record: CallRecord, upstream_seconds: float) -> float:
        return max(0.0, time.perf_counter() - record.started - upstream_seconds) * 1000

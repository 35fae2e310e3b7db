"""Which models a prompt may name: the chat aliases of the gateway's config.

A prompt's `model:` becomes the model of every call made with it, so a name the gateway does
not serve would validate, sync and be promoted, and then fail every call with a 404. It is
checked where a prompt enters the gateway instead: `prompts validate`, sync (the CLI's and
the server's) and promotion.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gateway.core.config import CLASSIC_PROVIDERS, GatewayConfig
from gateway.core.wildcards import WildcardName, first_match, is_wildcard, most_specific_first
from gateway.prompts.calling import MODEL_PREFIX as PROMPT_PREFIX
from gateway.prompts.files import PromptError, PromptFile

REGISTRY_PREFIX = "registry/"
_SHOWN = 12  # aliases listed in a message before "and N more"


@dataclass(frozen=True, slots=True)
class ServedModels:
    chat: frozenset[str]
    embedding: frozenset[str]
    source: str  # the config as messages name it
    # Chat names served otherwise: by a wildcard model_name, or a model_group_alias.
    chat_wildcards: tuple[WildcardName, ...] = ()
    chat_aliases: frozenset[str] = frozenset()
    classic: frozenset[str] = frozenset()  # called over /v2 infer, never as chat

    @classmethod
    def from_config(cls, config: GatewayConfig, source: str) -> ServedModels:
        classic = {
            m.model_name
            for m in config.model_list
            if m.litellm_params.model.partition("/")[0] in CLASSIC_PROVIDERS
        }
        embedding = {m.model_name for m in config.model_list if m.model_info.mode == "embedding"}
        # An alias with one chat deployment and one embedding deployment still serves chat.
        chat = {m.model_name for m in config.model_list if m.model_info.mode != "embedding"}
        chat -= classic
        wildcards = tuple(most_specific_first(filter(is_wildcard, chat)))
        served = cls(
            frozenset(chat),
            frozenset(embedding - chat),
            source,
            wildcards,
            classic=frozenset(classic),
        )
        aliases = config.router_settings.group_aliases()
        chat_aliases = frozenset(a for a, target in aliases.items() if served.serves_chat(target))
        return replace(served, chat_aliases=chat_aliases)

    def serves_chat(self, model: str) -> bool:
        if is_wildcard(model):  # a pattern, not a model a call can name
            return False
        if model in self.chat or model in self.chat_aliases:
            return True
        if model in self.embedding or model in self.classic:  # their own name wins, as routed
            return False
        return first_match(self.chat_wildcards, model) is not None

    def problem(self, model: str) -> str | None:
        """Why a prompt cannot name this model, or None when it can."""
        if self.serves_chat(model):
            return None
        served = self._served()
        if model == "prompt" or model.startswith(PROMPT_PREFIX):
            return (
                f"model {model!r} names a prompt; a prompt's model is a chat model alias "
                f"from the model_list of {self.source} ({served})"
            )
        if model.startswith(REGISTRY_PREFIX):
            return (
                f"model {model!r} is a registry ref: a call may name one, but a prompt's "
                f"model is checked against the config, so name the alias that serves the "
                f"version ({served})"
            )
        if model in self.classic:
            return (
                f"model {model!r} is a classic model (called with POST /v2/models/{model}/infer) "
                f"and a prompt is called as a chat completion ({served})"
            )
        if model in self.embedding:
            return (
                f"model {model!r} is an embedding model (model_info.mode: embedding in "
                f"{self.source}) and a prompt is called as a chat completion ({served})"
            )
        close = difflib.get_close_matches(model, sorted(self.chat), n=1, cutoff=0.6)
        unknown = f"model {model!r} is not served by this gateway (no model_name in {self.source})"
        if close:
            return f"{unknown}: did you mean {close[0]!r}?"
        return f"{unknown}; {served}"

    def _served(self) -> str:
        if not self.chat:
            return "it serves no chat model: add one to model_list"
        names = sorted(self.chat)
        more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        return f"served: {', '.join(names[:_SHOWN])}{more}"

    def check(self, prompt: PromptFile) -> PromptError | None:
        """The file's problem with its model, as `path:line: message`, or None."""
        problem = self.problem(prompt.model) if prompt.model else None
        if problem is None:
            return None
        return PromptError(prompt.path, [f"{prompt.path}:{prompt.model_line or 1}: {problem}"])

    def split(self, files: Iterable[PromptFile]) -> tuple[list[PromptFile], list[PromptError]]:
        """The files whose model is served, and the problems of the others."""
        good: list[PromptFile] = []
        errors: list[PromptError] = []
        for prompt in files:
            error = self.check(prompt)
            if error is None:
                good.append(prompt)
            else:
                errors.append(error)
        return good, errors

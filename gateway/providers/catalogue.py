"""The models LiteLLM's price map knows, by provider: what a wildcard deployment may serve.

Built from the map the price table has already read (`metering/prices.py`), only when the
config has a wildcard model_name; nothing here reads a file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PROVIDER = re.compile(r"[a-z0-9_-]+")


def _provider(listed: Any) -> str | None:
    """The provider prefix LiteLLM routes a map entry by: the map files some under a kind
    ("vertex_ai-language-models", "fireworks_ai-embedding-models") LiteLLM reads as the
    provider before the dash."""
    if not isinstance(listed, str) or not _PROVIDER.fullmatch(listed):
        return None
    return listed.partition("-")[0] if listed.endswith("-models") else listed


@dataclass(frozen=True, slots=True)
class KnownModel:
    name: str  # as the price map names it: "gpt-4o", "anthropic/claude-x", "azure/gpt-4o"
    mode: str  # chat, embedding, completion, image_generation, ...


class ModelCatalogue:
    def __init__(self, price_map: Mapping[str, Any]) -> None:
        self._provider: dict[str, str] = {}
        self._by_provider: dict[str, list[KnownModel]] = {}
        for name, entry in price_map.items():
            if not isinstance(entry, dict):
                continue
            provider = _provider(entry.get("litellm_provider"))
            if provider is None:
                continue
            self._provider[name] = provider
            mode = entry.get("mode")
            known = KnownModel(name, mode if isinstance(mode, str) else "chat")
            self._by_provider.setdefault(provider, []).append(known)

    def provider_of(self, name: str) -> str | None:
        """The provider LiteLLM infers for a model name without a prefix ("gpt-4o": openai)."""
        return self._provider.get(name)

    def models_of(self, provider: str) -> list[KnownModel]:
        return self._by_provider.get(provider, [])

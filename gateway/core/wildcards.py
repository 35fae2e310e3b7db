"""LiteLLM's wildcard model names (`*`, `openai/*`, `anthropic/claude-*`): which requested
names one matches, which of several wins, and the upstream model a match becomes.

Only the grammar, as LiteLLM's PatternMatchRouter defines it, so the config's checks, the
router and the prompt files agree on what a wildcard serves. One difference: a name must
match the whole pattern (LiteLLM matches from the start only, so `claude-*-latest` would also
take `claude-3-latest-foo` and drop the `-foo` it does not capture).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# What LiteLLM counts as a pattern's complexity (calculate_pattern_specificity).
_COMPLEXITY = ("*", "+", "?", "\\", "^", "$", "|", "(", ")")


def is_wildcard(name: str) -> bool:
    return "*" in name


@dataclass(frozen=True, slots=True)
class WildcardName:
    """A model_name with `*` in it: each `*` captures any text (an empty one included)."""

    name: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, name: str) -> WildcardName:
        return cls(name, re.compile(re.escape(name).replace(r"\*", "(.*)")))

    @property
    def specificity(self) -> tuple[int, int]:
        """LiteLLM's order: the longer regex first, then the one with more regex characters."""
        source = self.regex.pattern
        return len(source), sum(source.count(char) for char in _COMPLEXITY)

    def match(self, requested: str) -> re.Match[str] | None:
        return self.regex.fullmatch(requested)


def most_specific_first(names: Iterable[str]) -> list[WildcardName]:
    """Distinct wildcard names in the order they are tried; ties keep the config's order
    (sorted() is stable with reverse=True, as LiteLLM relies on too)."""
    parsed = [WildcardName.parse(name) for name in dict.fromkeys(names)]
    return sorted(parsed, key=lambda w: w.specificity, reverse=True)


def first_match(
    patterns: Iterable[WildcardName], requested: str
) -> tuple[WildcardName, re.Match[str]] | None:
    for pattern in patterns:
        match = pattern.match(requested)
        if match is not None:
            return pattern, match
    return None


def upstream_model(match: re.Match[str], model: str) -> str:
    """The deployment's `litellm_params.model` for a matched name (LiteLLM's
    set_deployment_model_name): its `*`s take the captured texts in order; a model without
    `*` stays as written; captures beyond its `*`s make it the requested name itself."""
    if "*" not in model:
        return model
    captured = match.groups()
    if len(captured) > model.count("*"):
        return match.string
    for text in captured:
        model = model.replace("*", text, 1)
    return model

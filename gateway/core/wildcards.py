"""LiteLLM's wildcard model names (`*`, `openai/*`, `anthropic/claude-*`): which requested
names one matches, which of several wins, and the upstream model a match becomes.

Only the grammar, as LiteLLM's PatternMatchRouter defines it (each `*` a greedy `(.*)`), so
the config's checks, the router and the prompt files agree on what a wildcard serves. It is
matched without a regex: a pattern with several `*`s backtracks in `re` (four of them take
seconds on a 256-character name, and names come from callers), while placing each literal
part as far right as it fits gives the same greedy captures in one pass. One difference from
LiteLLM: a name must match the whole pattern (LiteLLM matches from the start only, so
`claude-*-latest` would also take `claude-3-latest-foo` and drop the `-foo`).
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
    parts: tuple[str, ...]  # the literal text around the `*`s: one more than there are `*`s

    @classmethod
    def parse(cls, name: str) -> WildcardName:
        return cls(name, tuple(name.split("*")))

    @property
    def specificity(self) -> tuple[int, int]:
        """LiteLLM's order, computed on the regex it makes of the name: the longer first,
        then the one with more regex characters."""
        source = re.escape(self.name).replace(r"\*", "(.*)")
        return len(source), sum(source.count(char) for char in _COMPLEXITY)

    def match(self, requested: str) -> tuple[str, ...] | None:
        """The texts the `*`s capture, as a greedy `(.*)` each would, or None."""
        head, *middle, tail = self.parts
        if "\n" in requested or not requested.startswith(head):
            return None  # `.` does not match a newline in LiteLLM's regex
        end = len(requested) - len(tail)
        if end < len(head) or not requested.endswith(tail):
            return None
        # Each literal as far right as it fits: every capture before it is then the longest.
        starts = [end]
        for part in reversed(middle):
            start = requested.rfind(part, len(head), starts[-1])
            if start < 0:
                return None
            starts.append(start)
        starts.reverse()
        captured, position = [], len(head)
        for index, start in enumerate(starts):
            captured.append(requested[position:start])
            if index < len(middle):
                position = start + len(middle[index])
        return tuple(captured)


def most_specific_first(names: Iterable[str]) -> list[WildcardName]:
    """Distinct wildcard names in the order they are tried; ties keep the config's order
    (sorted() is stable with reverse=True, as LiteLLM relies on too)."""
    parsed = [WildcardName.parse(name) for name in dict.fromkeys(names)]
    return sorted(parsed, key=lambda w: w.specificity, reverse=True)


def first_match(
    patterns: Iterable[WildcardName], requested: str
) -> tuple[WildcardName, tuple[str, ...]] | None:
    for pattern in patterns:
        captured = pattern.match(requested)
        if captured is not None:
            return pattern, captured
    return None


def upstream_model(captured: tuple[str, ...], requested: str, model: str) -> str:
    """The deployment's `litellm_params.model` for a matched name (LiteLLM's
    set_deployment_model_name): its `*`s take the captured texts in order; a model without
    `*` stays as written; captures beyond its `*`s make it the requested name itself."""
    if "*" not in model:
        return model
    if len(captured) > model.count("*"):
        return requested
    for text in captured:
        model = model.replace("*", text, 1)
    return model

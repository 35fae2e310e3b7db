"""Prompts in Git: Dotprompt files parsed, validated, versioned by content, and rendered."""

from gateway.prompts.files import (
    PromptError,
    PromptFile,
    normalize,
    parse_prompt,
    prompt_json_schema,
    scan,
    version_of,
)
from gateway.prompts.render import PromptRenderer

__all__ = [
    "PromptError",
    "PromptFile",
    "PromptRenderer",
    "normalize",
    "parse_prompt",
    "prompt_json_schema",
    "scan",
    "version_of",
]

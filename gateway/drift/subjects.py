"""What is monitored, and how a subject is named (in the API's paths, the CLI, metrics labels):

    prompt:NAME@VERSION:ALIAS   calls of one prompt version through one model alias
    model:ALIAS                 calls naming the alias directly (no prompt)
    classic:NAME@VERSION        a classic model's registry version (its features and prediction)

Each sampled call belongs to exactly one subject, so a shift in one prompt's traffic is seen
in that prompt's subject and in no other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SubjectKind = Literal["prompt", "model", "classic"]


@dataclass(frozen=True, slots=True)
class Subject:
    kind: SubjectKind
    model: str  # the alias, or the classic model's registry name
    prompt: str | None = None
    version: str | None = None  # the prompt's, or the classic model's registry version

    @property
    def id(self) -> str:
        if self.kind == "prompt":
            return f"prompt:{self.prompt}@{self.version}:{self.model}"
        if self.kind == "classic":
            return f"classic:{self.model}@{self.version}"
        return f"model:{self.model}"

    def with_version(self, version: str) -> Subject:
        """The same prompt (or classic model) at another version."""
        return Subject(self.kind, self.model, self.prompt, version)


def for_call(alias: str, prompt: str | None, version: str | None) -> Subject:
    if prompt is not None and version is not None:
        return Subject("prompt", alias, prompt, version)
    return Subject("model", alias)


def classic(name: str, version: int | str) -> Subject:
    return Subject("classic", name, None, str(version))


def parse(text: str) -> Subject:
    """A subject from its id; a ValueError says what is wrong."""
    kind, colon, rest = text.partition(":")
    if colon and rest:
        if kind == "model":
            return Subject("model", rest)
        if kind == "prompt":
            named, at, tail = rest.partition("@")
            version, colon, alias = tail.partition(":")
            if named and at and version and colon and alias:
                return Subject("prompt", alias, named, version)
        if kind == "classic":
            name, at, version = rest.rpartition("@")
            if name and at and version:
                return Subject("classic", name, None, version)
    raise ValueError(
        f"{text!r} is not a drift subject: write prompt:NAME@VERSION:ALIAS, model:ALIAS or "
        f"classic:NAME@VERSION"
    )


def prompt_filter_problem(prompt: str) -> str | None:
    """What is wrong with a `prompt` filter (NAME or NAME@VERSION), or None."""
    name, at, version = prompt.partition("@")
    if name and (version or not at):
        return None
    return (
        f"must be a prompt NAME or NAME@VERSION (e.g. support-triage or "
        f"support-triage@3f2a9c01b7de), not {prompt!r}"
    )


def selected(subject: Subject, model: str | None = None, prompt: str | None = None) -> bool:
    """Whether the subject is among those asked for: `model` an alias or classic model name
    (its prompts' subjects included), `prompt` NAME or NAME@VERSION."""
    if prompt is not None:
        name, _, version = prompt.partition("@")
        if subject.kind != "prompt" or subject.prompt != name:
            return False
        if version and subject.version != version:
            return False
    return model is None or subject.model == model

"""Prompt files: discovery, normalization, content versions, parsing and strict validation.

A prompt is `prompts/<name>.prompt` (a variant: `<name>.<variant>.prompt`) in Dotprompt format:
YAML front matter between `---` lines, then a Handlebars body. Every problem of a file is
collected and reported as `path:line: message`, with the line counted in the whole file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotpromptz import Dotprompt, FrontmatterError
from dotpromptz_handlebars import Handlebars

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import (
    MIB,
    YamlDocument,
    YamlError,
    check_size,
    one_line,
    read_text,
    text_problem,
)
from gateway.prompts import schemas
from gateway.prompts.frontmatter import FrontMatter, front_json_schema, validate_front
from gateway.prompts.template import scan_body

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
SUFFIX = ".prompt"
# A prompt is a page or two; the bound keeps a stray huge file from stalling validation.
MAX_PROMPT_BYTES = 1 * MIB
_SIZE_ADVICE = "a prompt is front matter and a template; keep data out of it"


class PromptError(Exception):
    """Validation problems of one file; .problems is a list of 'path:line: message' strings."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PromptFile:
    name: str
    path: Path
    text: str  # normalized: what the version hashes
    version: str
    front: dict[str, Any]
    template: str
    model: str | None
    config: dict[str, Any]
    input_schema: dict[str, Any] | None  # JSON Schema; keys with an input.default not required
    output_format: str
    output_schema: dict[str, Any] | None
    model_line: int | None = None  # where `model:` is written, for messages about the model


def normalize(text: str) -> str:
    """Line endings, trailing spaces and trailing blank lines do not mint a new version."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n") + "\n"


def version_of(text: str) -> str:
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()[:12]


def prompt_json_schema() -> str:
    return front_json_schema()


def parse_prompt(path: Path, text: str | None = None) -> PromptFile:
    """Parse and validate one file (read from disk unless text is given)."""
    try:
        if text is None:
            text = read_text(path, MAX_PROMPT_BYTES, _SIZE_ADVICE)
        else:
            check_size(path, text, MAX_PROMPT_BYTES, _SIZE_ADVICE)
    except ConfigError as exc:
        rest = str(exc).removeprefix(f"{path}:")
        if not rest[:1].isdigit():  # every problem reads path:line: message
            rest = f"1:{rest}"
        raise PromptError(path, [f"{path}:{rest}"]) from None
    problem = text_problem(text)
    if problem is not None:  # stored prompts go to PostgreSQL, which refuses NUL in text
        bad = next(i for i, char in enumerate(text) if text_problem(char))
        line = text.count("\n", 0, bad) + 1
        raise PromptError(path, [f"{path}:{line}: the file {problem}"])
    parser = _Parser(path, normalize(text))
    prompt = parser.parse()
    if parser.problems or prompt is None:
        ordered = sorted(parser.problems, key=lambda problem: problem[0])
        raise PromptError(
            path, [one_line(f"{path}:{line}: {message}") for line, message in ordered]
        )
    return prompt


def scan(directory: Path) -> tuple[list[PromptFile], list[PromptError]]:
    """Every *.prompt under directory, recursively (hidden folders skipped), sorted by name.

    Folders only organize files: the name comes from the file name, so two files with the
    same name in different folders are an error and neither is served.
    """
    by_name: dict[str, list[Path]] = {}
    for path in prompt_paths(directory):
        by_name.setdefault(prompt_name(path), []).append(path)
    files: list[PromptFile] = []
    errors: list[PromptError] = []
    for name, same in sorted(by_name.items()):
        if len(same) > 1:
            others = ", ".join(str(p) for p in same[:-1])
            message = f"prompt name {name!r} is also used by {others} (rename or remove one)"
            errors.append(PromptError(same[-1], [f"{same[-1]}:1: {message}"]))
            continue
        try:
            files.append(parse_prompt(same[0]))
        except PromptError as exc:
            errors.append(exc)
    return files, errors


def prompt_paths(directory: Path) -> list[Path]:
    """Every *.prompt file under directory, hidden folders skipped, sorted; none when the
    folder does not exist."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.rglob(f"*{SUFFIX}")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def prompt_name(path: Path) -> str:
    return path.name.removesuffix(SUFFIX)


class _Parser:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[tuple[int, str]] = []
        self.doc = YamlDocument(path, "")
        self.broken: set[str] = set()  # front matter keys that failed validation

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def parse(self) -> PromptFile | None:
        name, variant = self._names()
        lines = self.text.split("\n")
        opening = next((i for i, line in enumerate(lines) if line.strip() and line[0] != "#"), 0)
        front_text, body, body_line = "", self.text, 1
        if lines[opening] == "---":
            closing = next((i for i in range(opening + 1, len(lines)) if lines[i] == "---"), None)
            if closing is None:
                self.problem(
                    opening + 1, "front matter has no closing '---' line (add one after the YAML)"
                )
                return None
            # Blank lines keep the YAML's own line numbers equal to the file's.
            front_text = "\n" * (opening + 1) + "\n".join(lines[opening + 1 : closing])
            body, body_line = "\n".join(lines[closing + 1 :]), closing + 2
        front = self._front(front_text, opening + 2, name, variant)
        self._dotprompt_checks()
        input_schema = output_schema = None
        if front is not None and front.input is not None:
            input_schema = schemas.input_schema(front.input, self.doc, self.problems)
        if front is not None and front.output is not None:
            output_schema = schemas.output_schema(front.output, self.doc, self.problems)
        self._body(body, body_line, front, input_schema)
        if front is None or self.problems:
            return None
        output = front.output
        fmt = (output.format if output else None) or ("json" if output_schema else "text")
        return PromptFile(
            name=name,
            path=self.path,
            text=self.text,
            version=version_of(self.text),
            front=front.model_dump(exclude_none=True, by_alias=True),
            template=body,
            model=front.model,
            config=front.config.model_dump(exclude_none=True) if front.config else {},
            input_schema=input_schema,
            output_format=fmt,
            output_schema=output_schema,
            model_line=self.doc.line_of(("model",)) if front.model else None,
        )

    def _names(self) -> tuple[str, str | None]:
        stem = self.path.name.removesuffix(SUFFIX)
        base, _, variant = stem.partition(".")
        if not NAME.fullmatch(base) or (variant and not NAME.fullmatch(variant)):
            hint = ""
            if stem.startswith("_"):
                hint = " (Dotprompt partials start with '_'; gateway prompts cannot use them)"
            self.problem(
                1,
                f"file name {self.path.name!r} is not <name>.prompt or <name>.<variant>.prompt "
                f"with lowercase letters, digits, '-' and '_'{hint}",
            )
        return stem, variant or None

    def _front(
        self, front_text: str, first_line: int, name: str, variant: str | None
    ) -> FrontMatter | None:
        try:
            self.doc = doc = YamlDocument(self.path, front_text)
        except YamlError as exc:
            problem = exc.problem.replace("<stream end>", "the end of the front matter")
            self.problem(exc.line or first_line, problem)
            return None
        if doc.data is not None and not isinstance(doc.data, dict):
            self.problem(first_line, "front matter must be a mapping of keys (key: value lines)")
            return None
        front, problems, self.broken = validate_front(doc)
        self.problems.extend(problems)
        self._check_names(doc.data or {}, first_line, name, variant)
        return front

    def _check_names(
        self, data: dict[str, Any], first_line: int, name: str, variant: str | None
    ) -> None:
        """name and variant, when written, must agree with the file name (raw data: these
        checks hold even when other keys fail validation)."""
        base = name.partition(".")[0]
        written = data.get("name")
        if isinstance(written, str) and written not in {name, base}:
            self.problem(
                self.doc.line_of(("name",)) or first_line,
                f"name {written!r} does not match the file name {name!r} "
                f"(rename the file or remove 'name')",
            )
        written = data.get("variant")
        if isinstance(written, str) and written != variant:
            expected = f"the file name's variant {variant!r}" if variant else "no variant"
            self.problem(
                self.doc.line_of(("variant",)) or first_line,
                f"variant {written!r} but the file name has {expected} "
                f"(name the file {base}.{written}.prompt or remove 'variant')",
            )

    def _dotprompt_checks(self) -> None:
        """What dotpromptz itself refuses (anchors, aliases, tags, duplicate keys)."""
        if self.problems:
            return  # our own messages already say more
        try:
            Dotprompt().parse(self.text, source_name=str(self.path))
        except FrontmatterError as exc:
            self.problem(exc.line, f"front matter: {exc.reason}")
        except Exception as exc:  # dotpromptz must never surface as a traceback
            self.problem(1, f"dotpromptz cannot parse this file: {exc}")

    def _body(
        self,
        body: str,
        first_line: int,
        front: FrontMatter | None,
        input_schema: dict[str, Any] | None,
    ) -> None:
        if not body.strip():
            self.problem(first_line, "the prompt has no template (write its messages below)")
            return
        found = scan_body(body, first_line)
        self.problems.extend(found.problems)
        wrote = front is not None and front.input is not None and front.input.schema_ is not None
        # A schema that failed its own checks would make every variable look undeclared.
        input_failed = "input" in self.broken or (wrote and input_schema is None)
        if front is not None and not input_failed:
            declared = set((input_schema or {}).get("properties") or {})
            # An explicit wildcard ((*): type in Picoschema) declares every other name.
            open_ended = (input_schema or {}).get("additionalProperties") not in (None, False)
            for variable, line in found.variables.items():
                if variable not in declared and not open_ended:
                    self.problem(
                        line,
                        f"template uses {{{{{variable}}}}} but input.schema does not declare it "
                        f"(add it to input.schema)",
                    )
        if not found.problems:
            try:
                Handlebars().compile(body)
            except Exception as exc:  # the real parser is the last word on syntax
                self.problem(first_line, f"template syntax error: {exc}")

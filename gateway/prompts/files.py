"""Prompt files: discovery, reading, and parsing with the partials and schemas beside them.

A prompt is `prompts/<name>.prompt` (a variant: `<name>.<variant>.prompt`) in Dotprompt format:
YAML front matter between `---` lines, then a Handlebars body. Beside the prompts live the
partials (`_<name>.prompt`) and named schemas (`<Name>.schema.yaml`) they may use
(`gateway/prompts/library.py`). Every problem of a file is collected and reported as
`path:line: message`, with the line counted in the whole file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import MIB, check_size, one_line, read_text, text_problem
from gateway.prompts.frontmatter import front_json_schema
from gateway.prompts.library import Library, is_partial, load_library, normalize
from gateway.prompts.parsing import NAME, SUFFIX, Parser
from gateway.prompts.prompt import PromptError, PromptFile, version_of

__all__ = [
    "MAX_PROMPT_BYTES",
    "NAME",
    "SUFFIX",
    "PromptError",
    "PromptFile",
    "normalize",
    "parse_prompt",
    "prompt_json_schema",
    "prompt_name",
    "prompt_paths",
    "scan",
    "version_of",
]

# A prompt is a page or two; the bound keeps a stray huge file from stalling validation.
MAX_PROMPT_BYTES = 1 * MIB
_SIZE_ADVICE = "a prompt is front matter and a template; keep data out of it"


def prompt_json_schema() -> str:
    return front_json_schema()


def parse_prompt(
    path: Path,
    text: str | None = None,
    library: Library | None = None,
    *,
    includes: Mapping[str, Any] | None = None,
    legacy: bool = False,
) -> PromptFile:
    """Parse and validate one file (read from disk unless text is given).

    Partials and named schemas come from `library` (the prompts folder's; for a file read
    from disk, by default, its own folder's), or, for a stored version, from the `includes`
    it was registered with; `legacy` parses a version stored before the gateway rendered as
    Dotprompt does (its id and rendering kept).
    """
    if library is None and includes is None and text is None:
        library = load_library(path.parent)
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
    if library is None:
        library = Library.stored(includes)
    parser = Parser(path, normalize(text), library, legacy)
    prompt = parser.parse()
    if parser.problems or prompt is None:
        ordered = sorted(parser.problems, key=lambda problem: problem[0])
        raise PromptError(
            path, [one_line(f"{path}:{line}: {message}") for line, message in ordered]
        )
    return prompt


def scan(directory: Path) -> tuple[list[PromptFile], list[PromptError]]:
    """Every *.prompt under directory, recursively (hidden folders skipped), sorted by name,
    with the partials and schemas found there; a partial or schema file with problems is
    reported once, and every prompt using it fails.

    Folders only organize prompts: the name comes from the file name, so two files with the
    same name in different folders are an error and neither is served.
    """
    library = load_library(directory)
    errors = [PromptError(path, problems) for path, problems in library.problems.items()]
    by_name: dict[str, list[Path]] = {}
    for path in prompt_paths(directory):
        by_name.setdefault(prompt_name(path), []).append(path)
    files: list[PromptFile] = []
    for name, same in sorted(by_name.items()):
        if len(same) > 1:
            others = ", ".join(str(p) for p in same[:-1])
            message = f"prompt name {name!r} is also used by {others} (rename or remove one)"
            errors.append(PromptError(same[-1], [f"{same[-1]}:1: {message}"]))
            continue
        try:
            files.append(parse_prompt(same[0], library=library))
        except PromptError as exc:
            errors.append(exc)
    return files, errors


def prompt_paths(directory: Path) -> list[Path]:
    """Every *.prompt file under directory that is not a partial, hidden folders skipped,
    sorted; none when the folder does not exist."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.rglob(f"*{SUFFIX}")
        if p.is_file()
        and not is_partial(p)
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def prompt_name(path: Path) -> str:
    return path.name.removesuffix(SUFFIX)

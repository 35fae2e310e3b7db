"""One prompt file's text to a validated `PromptFile`, every problem with its line.

dotpromptz parses the file (its front matter rules, its template: the body as Dotprompt
reads it, trimmed); the gateway's own checks then add what helps authors and what the
gateway needs to serve it: strict front matter with did-you-mean, schemas that expand,
variables a declared input schema lacks, partials and `@` names nothing provides.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from dotpromptz import Dotprompt, FrontmatterError
from dotpromptz_handlebars import Handlebars

from gateway.core.yamlfile import YamlDocument, YamlError
from gateway.prompts import schemas
from gateway.prompts.context import data_problem
from gateway.prompts.frontmatter import FrontMatter, validate_front
from gateway.prompts.library import Library, missing_partial
from gateway.prompts.prompt import PromptFile, legacy_version_of, version_of
from gateway.prompts.template import BodyScan, PartialUse, scan_body

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
SUFFIX = ".prompt"
_DELIMITER = re.compile(r"---[ \t]*")  # as dotpromptz finds front matter


class Parser:
    def __init__(self, path: Path, text: str, library: Library, legacy: bool) -> None:
        self.path = path
        self.text = text
        self.library = library
        self.legacy = legacy
        self.problems: list[tuple[int, str]] = []
        self.doc = YamlDocument(path, "")
        self.broken: set[str] = set()  # front matter keys that failed validation
        self.used_schemas: set[str] = set()
        self.partials: dict[str, str] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def parse(self) -> PromptFile | None:
        name, variant = self._names()
        lines = self.text.split("\n")
        opening = next((i for i, line in enumerate(lines) if line.strip() and line[0] != "#"), 0)
        front_text, body, body_line = "", self.text, 1
        if _DELIMITER.fullmatch(lines[opening]):
            closing = next(
                (i for i in range(opening + 1, len(lines)) if _DELIMITER.fullmatch(lines[i])),
                None,
            )
            if closing is None:
                self.problem(
                    opening + 1, "front matter has no closing '---' line (add one after the YAML)"
                )
                return None
            # Blank lines keep the YAML's own line numbers equal to the file's.
            front_text = "\n" * (opening + 1) + "\n".join(lines[opening + 1 : closing])
            body, body_line = "\n".join(lines[closing + 1 :]), closing + 2
        front = self._front(front_text, opening + 2, name, variant)
        parsed = self._dotprompt()
        input_schema = output_schema = context_schema = None
        library, used = self.library, self.used_schemas
        if front is not None and front.input is not None:
            input_schema = schemas.input_schema(front.input, self.doc, self.problems, library, used)
        if front is not None and front.output is not None:
            output_schema = schemas.output_schema(
                front.output, self.doc, self.problems, library, used
            )
        if front is not None:
            written = front.gateway_context
            context_schema = schemas.context_schema(written, self.doc, self.problems, library, used)
        found = self._body(body, body_line, front, input_schema, context_schema)
        if front is None or parsed is None or self.problems:
            return None
        output = front.output
        fmt = (output.format if output else None) or ("json" if output_schema else "text")
        named = {n: library.schemas[n] for n in sorted(used) if n in library.schemas}
        includes = {"partials": self.partials, "schemas": named}
        return PromptFile(
            name=name,
            path=self.path,
            text=self.text,
            version=legacy_version_of(self.text)
            if self.legacy
            else version_of(self.text, {k: v for k, v in includes.items() if v}),
            front=front.model_dump(exclude_none=True, by_alias=True),
            template=body if self.legacy else parsed.template,
            model=front.model,
            config=front.config.model_dump(exclude_none=True) if front.config else {},
            input_schema=input_schema,
            output_format=fmt,
            output_schema=output_schema,
            model_line=self.doc.line_of(("model",)) if front.model else None,
            context_schema=context_schema,
            data_names=frozenset(path.split(".")[0] for path in found.data),
            partials=dict(self.partials),
            schemas=named,
            ext=dict(parsed.ext or {}),
            legacy=self.legacy,
        )

    def _names(self) -> tuple[str, str | None]:
        stem = self.path.name.removesuffix(SUFFIX)
        base, _, variant = stem.partition(".")
        if not NAME.fullmatch(base) or (variant and not NAME.fullmatch(variant)):
            hint = ""
            if stem.startswith("_"):
                hint = " (a file starting with '_' is a partial, included with {{> name}})"
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

    def _dotprompt(self) -> Any:
        """dotpromptz's own parse: the template as Dotprompt reads it and the ext metadata,
        and what it refuses (anchors, aliases, tags, duplicate keys)."""
        try:
            return Dotprompt().parse(self.text, source_name=str(self.path))
        except FrontmatterError as exc:
            if not self.problems:  # our own messages already say more
                self.problem(exc.line, f"front matter: {exc.reason}")
        except Exception as exc:  # dotpromptz must never surface as a traceback
            if not self.problems:
                self.problem(1, f"dotpromptz cannot parse this file: {exc}")
        return None

    def _body(
        self,
        body: str,
        first_line: int,
        front: FrontMatter | None,
        input_schema: dict[str, Any] | None,
        context_schema: dict[str, Any] | None,
    ) -> BodyScan:
        found = scan_body(body, first_line)
        self.problems.extend(found.problems)
        for use in found.partials:
            if use.name not in found.inline:
                self._include(use, [use.name], use, found)
        wrote = front is not None and front.input is not None and front.input.schema_ is not None
        # A schema that failed its own checks would make every variable look undeclared.
        input_failed = "input" in self.broken or (wrote and input_schema is None)
        if wrote and not input_failed:
            self._check_variables(found, input_schema)
        context_failed = "gateway.context" in self.broken or (
            front is not None and front.gateway_context is not None and context_schema is None
        )
        if not self.legacy and front is not None and not context_failed:
            for path, line in found.data.items():
                problem = data_problem(path, context_schema)
                if problem is not None:
                    self.problem(line, problem)
        if not found.problems and body.strip():
            try:
                Handlebars().compile(body)
            except Exception as exc:  # the real parser is the last word on syntax
                self.problem(first_line, f"template syntax error: {exc}")
        return found

    def _include(self, use: PartialUse, chain: list[str], at: PartialUse, out: BodyScan) -> None:
        """A partial the body includes, and the partials it includes in turn: their text
        joins the version, their variables (when included in the input's own context) and
        `@` names are checked as the body's. Problems point at the body's `{{> name}}`."""
        name = use.name
        source = self.library.partials.get(name)
        if source is None:
            if not use.block:  # a block partial's fallback renders when it is missing
                self.problem(at.line, missing_partial(self.library, name))
            return
        if f"partial {name}" in self.library.broken:
            where = self.library.where.get(f"partial {name}", name)
            self.problem(at.line, f"{{{{> {name}}}}}: the partial has problems (see {where})")
            return
        self.partials[name] = source
        inner = scan_body(source, 1)
        for path in inner.data:
            out.data.setdefault(path, at.line)
        if at.top_level and use.top_level:
            for variable in inner.variables:
                if variable not in use.hash_keys:
                    out.variables.setdefault(variable, at.line)
        for sub in inner.partials:
            if sub.name in inner.inline:
                continue
            if sub.name in chain:
                cycle = " -> ".join([*chain[chain.index(sub.name) :], sub.name])
                self.problem(at.line, f"{{{{> {at.name}}}}}: partials include each other: {cycle}")
                continue
            nested = PartialUse(
                sub.name, sub.line, sub.top_level and use.top_level, sub.hash_keys, sub.block
            )
            self._include(nested, [*chain, sub.name], at, out)

    def _check_variables(self, found: BodyScan, input_schema: dict[str, Any] | None) -> None:
        if not schemas.is_object(input_schema):
            kind = (input_schema or {}).get("type", "any")
            for variable, line in found.variables.items():
                self.problem(
                    line,
                    f"template uses {{{{{variable}}}}} but input.schema is one value of type "
                    f"{kind!r}, read as {{{{this}}}} (a Picoschema field named 'type' reads as "
                    f"JSON Schema: rename it)",
                )
            return
        assert input_schema is not None
        declared = set(input_schema.get("properties") or {})
        # An explicit wildcard ((*): type in Picoschema) declares every other name.
        if input_schema.get("additionalProperties") not in (None, False):
            return
        for variable, line in found.variables.items():
            if variable not in declared:
                close = difflib.get_close_matches(variable, sorted(declared), n=1, cutoff=0.75)
                hint = f"; did you mean {{{{{close[0]}}}}}?" if close else ""
                self.problem(
                    line,
                    f"template uses {{{{{variable}}}}} but input.schema does not declare it "
                    f"(add it to input.schema){hint}",
                )

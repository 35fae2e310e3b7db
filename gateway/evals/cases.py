"""From the cases a suite writes to the cases it runs, as promptfoo prepares its tests:

- `file://` variables are read (relative to the suite, inside the project);
- a variable whose value is a list makes one case per item (several lists: every
  combination), unless the case sets `options.disableVarExpansion`;
- assertion values and metric names are rendered with the case's variables
  (`templating`), `file://` values are read, and each assertion is checked again as rendered.

Everything here happens when the suite loads, so a mistake stops `eval validate` with the
suite, the case and the assertion named, before any model is called.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.errors import ConfigError
from gateway.evals.assertions import AssertionSpec, revalidate
from gateway.evals.files import PREFIX, FileRefError, Files, is_file_ref
from gateway.evals.scripts import FILE_FUNCTION
from gateway.evals.templating import TemplateProblem, render, render_value

if TYPE_CHECKING:
    from gateway.evals.suite import CaseSpec


class CaseProblem(ValueError):
    """What is wrong with one case; the loader adds the suite and the case."""


def expand(case: CaseSpec, files: Files) -> list[dict[str, Any]]:
    """The variables of each case this one stands for."""
    variables: dict[str, Any] = {}
    for name, value in case.vars.items():
        try:
            variables[name] = files.variable(value) if is_file_ref(value) else value
        except FileRefError as exc:
            raise CaseProblem(f"vars.{name}: {exc}") from None
    if case.options.disable_var_expansion:
        return [variables]
    lists = {name: value for name, value in variables.items() if isinstance(value, list)}
    for name, value in lists.items():
        if not value:
            raise CaseProblem(
                f"vars.{name} is an empty list, which expands to no case; set "
                "options.disableVarExpansion: true to pass lists as they are"
            )
    if not lists:
        return [variables]
    names = list(lists)
    return [
        {**variables, **dict(zip(names, combination, strict=True))}
        for combination in itertools.product(*(lists[name] for name in names))
    ]


def script_ref(code: str, files: Files) -> str:
    """A `file://code.py[:function]` with its path made absolute (and checked to be inside the
    project and to exist); any other code as it is."""
    match = FILE_FUNCTION.fullmatch(code)
    if match is None:
        return code
    path = files.path(match["path"])
    if not path.is_file():
        raise FileRefError(f"{code}: file not found")
    return f"{PREFIX}{path}" + (f":{match['function']}" if match["function"] else "")


def _value(spec: AssertionSpec, variables: dict[str, Any], files: Files) -> Any:
    value = spec.value
    if spec.base_type == "python" or (isinstance(value, str) and FILE_FUNCTION.fullmatch(value)):
        # Code: a python check, or a function computing another assertion's expected value.
        return script_ref(render(value, variables), files) if isinstance(value, str) else value
    if is_file_ref(value):
        return files.expected(value)
    if isinstance(value, list):
        return [
            files.expected(item) if is_file_ref(item) else render_value(item, variables)
            for item in value
        ]
    return render_value(value, variables)


def _render(spec: AssertionSpec, variables: dict[str, Any], files: Files) -> AssertionSpec:
    update: dict[str, Any] = {}
    if spec.value is not None:
        update["value"] = _value(spec, variables, files)
    if spec.metric is not None:
        update["metric"] = render(spec.metric, variables)
    if spec.transform is not None:
        update["transform"] = script_ref(spec.transform, files)
    if spec.asserts is not None:
        update["assert"] = [
            _checked(child, variables, files, f"assert[{i}]")
            for i, child in enumerate(spec.asserts)
        ]
    if not update:
        return spec
    return revalidate(spec, **update)


def _checked(
    spec: AssertionSpec, variables: dict[str, Any], files: Files, where: str
) -> AssertionSpec:
    try:
        return _render(spec, variables, files)
    except (TemplateProblem, FileRefError, ValueError) as exc:
        if isinstance(exc, CaseProblem):
            raise
        raise CaseProblem(f"{where} ({spec.type}): {exc}") from None


def prepare(case: CaseSpec, files: Files) -> list[CaseSpec]:
    """The cases `case` runs as: expanded, files read, assertions rendered and checked."""
    prepared = []
    options = case.options
    if options.transform is not None:
        try:
            options = options.model_copy(update={"transform": script_ref(options.transform, files)})
        except FileRefError as exc:
            raise CaseProblem(f"options.transform: {exc}") from None
    combinations = expand(case, files)
    for number, variables in enumerate(combinations, 1):
        asserts = [
            _checked(spec, variables, files, f"assert[{i}]") for i, spec in enumerate(case.asserts)
        ]
        case_id = f"{case.id}[{number}]" if len(combinations) > 1 else case.id
        prepared.append(
            case.model_copy(
                update={"id": case_id, "vars": variables, "asserts": asserts, "options": options}
            )
        )
    return prepared


def prepare_all(path: Path, cases: list[CaseSpec]) -> list[CaseSpec]:
    files = Files.for_suite(path)
    prepared: list[CaseSpec] = []
    for case in cases:
        try:
            prepared += prepare(case, files)
        except (CaseProblem, FileRefError) as exc:
            raise ConfigError(f"{path}: case {case.id!r}: {exc}") from None
    return prepared

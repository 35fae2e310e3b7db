"""User Python in suites: `python` checks and `transform`s, in the three forms promptfoo users
write (inline code, `file://checks.py:function`) plus ours (`module.path:function`).

Inline code is promptfoo's: one line is an expression (`output.startswith('Hello')`), several
lines are the body of `def main(output, context)` ending in `return`. `json` is imported for it.
A python check's result is read as promptfoo reads it: a bool passes or fails; a number passes
above 0 (or at `threshold` when one is set) and is the score; a {pass, score, reason} dict is
used as given, failing when its score is under `threshold`. `not-` flips pass, keeps the score.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.evals.files import PREFIX
from gateway.evals.verdicts import CannotJudge, Check, EvalContext, Verdict

if TYPE_CHECKING:
    from gateway.evals.assertions import AssertionSpec

MODULE_FUNCTION = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
FILE_FUNCTION = re.compile(r"file://(?P<path>[^:]+?\.py)(?::(?P<function>[A-Za-z_]\w*))?")


def is_script(value: str) -> bool:
    """`file://code.py` or `file://code.py:function`: a function gives the value."""
    return FILE_FUNCTION.fullmatch(value) is not None


class ScriptProblem(Exception):
    """User code that could not run: the case is an ERROR that says why."""


def script_problem(code: str) -> str | None:
    """Why `code` cannot be a check or transform (a syntax error), checked when loading."""
    if MODULE_FUNCTION.fullmatch(code.strip()) or code.startswith(PREFIX):
        if code.startswith(PREFIX) and FILE_FUNCTION.fullmatch(code) is None:
            return f"{code!r}: a file is named file://path/to/code.py or file://code.py:function"
        return None
    try:
        _inline(code)
    except SyntaxError as exc:
        return f"not valid Python: {exc.msg} (line {exc.lineno})"
    return None


@lru_cache(maxsize=1024)
def _inline(code: str) -> Callable[..., Any]:
    """promptfoo's inline form: an expression, or the body of main(output, context)."""
    if "\n" in code.strip():
        body = textwrap.indent(textwrap.dedent(code), "    ")
    else:
        body = f"    return ({code.strip()})"
    source = f"import json\n\ndef main(output, context):\n{body}\n"
    namespace: dict[str, Any] = {}
    # The suite's own code, as trusted as the file it is written in.
    exec(compile(source, "<suite python>", "exec"), namespace)
    function: Callable[..., Any] = namespace["main"]
    return function


@lru_cache(maxsize=256)
def _from_file(path: str, name: str) -> Callable[..., Any]:
    """A function of a Python file, loaded once under a name of its own."""
    module_name = "gateway_suite_" + hashlib.sha256(path.encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScriptProblem(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ScriptProblem(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ScriptProblem(f"{path} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def _from_module(target: str) -> Callable[..., Any]:
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ScriptProblem(f"cannot import {module_name!r}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ScriptProblem(f"{module_name!r} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def function_of(code: str, default_name: str) -> Callable[..., Any]:
    """The callable a check or transform names. A `file://` path is already absolute and
    confined to the project (the suite loader resolved it)."""
    match = FILE_FUNCTION.fullmatch(code)
    if match is not None:
        return _from_file(str(Path(match["path"])), match["function"] or default_name)
    if MODULE_FUNCTION.fullmatch(code.strip()):
        return _from_module(code.strip())
    try:
        return _inline(code)
    except SyntaxError as exc:
        raise ScriptProblem(f"not valid Python: {exc.msg}") from None


async def call(code: str, default_name: str, output: Any, context: dict[str, Any]) -> Any:
    function = function_of(code, default_name)
    try:
        result = function(output, context)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise ScriptProblem(f"{_label(code)} raised {type(exc).__name__}: {exc}") from None
    return result


def _label(code: str) -> str:
    text = code.strip().splitlines()[0] if code.strip() else code
    return text if len(text) <= 60 else text[:59] + "…"


async def run_transform(code: str, ctx: EvalContext) -> str:
    """The output a transform makes; anything but text is written as JSON (promptfoo's rule)."""
    import json

    result = await call(code, "get_transform", ctx.output, ctx.script_context())
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError):
        raise ScriptProblem(
            f"{_label(code)} returned {type(result).__name__}, which is not text or JSON"
        ) from None


async def script_value(code: str, ctx: EvalContext, config: dict[str, Any] | None) -> Any:
    """The expected value a `file://code.py` gives a non-python assertion (promptfoo's
    get_assert): called with the output and context."""
    result = await call(code, "get_assert", ctx.output, ctx.script_context(config))
    if isinstance(result, bool) or (isinstance(result, dict) and "pass" in result):
        raise ScriptProblem(
            f"{_label(code)} returned a verdict; for a non-python assertion it must return the "
            "expected value (use type: python for a verdict)"
        )
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def python_verdict(spec: AssertionSpec, result: Any) -> Verdict:
    """Read what a python check returned, as promptfoo does."""
    label = _label(spec.value)
    expectation = f"to pass {label}"
    threshold = spec.threshold
    if hasattr(result, "item") and callable(result.item):
        result = result.item()  # numpy scalars
    if isinstance(result, str) and result.strip().lower() in ("true", "false"):
        result = result.strip().lower() == "true"
    if isinstance(result, bool):
        return Verdict(result, expectation)
    if _is_number(result):
        score = float(result)
        _check_unit(label, score)
        passed = score > 0 if threshold is None else score >= threshold
        return Verdict(passed, expectation, f"score {score:.3f}", score, invert_score=False)
    if isinstance(result, dict) and ("pass" in result or "score" in result):
        return _dict_verdict(label, expectation, result, threshold)
    raise CannotJudge(
        f"{label} returned {type(result).__name__}; expected a bool, a score from 0 to 1, "
        "or a dict with pass, score and reason"
    )


def _dict_verdict(
    label: str, expectation: str, result: dict[str, Any], threshold: float | None
) -> Verdict:
    raw_score = result.get("score")
    if raw_score is not None and not _is_number(raw_score):
        raise CannotJudge(f"{label} returned a score that is not a number: {raw_score!r}")
    score = None if raw_score is None else float(raw_score)
    if score is not None:
        _check_unit(label, score)
    passed = result.get("pass")
    if passed is None:  # no pass: read the score as a returned number is read
        passed = score is not None and (score > 0 if threshold is None else score >= threshold)
    elif not isinstance(passed, bool):
        raise CannotJudge(f"{label} returned pass={passed!r}; expected true or false")
    reason = str(result.get("reason") or "")
    if passed and threshold is not None and score is not None and score < threshold:
        passed = False  # promptfoo applies the threshold to a returned score too
        reason = f"score {score:g} is under the threshold {threshold:g}" + (
            f": {reason}" if reason else ""
        )
    finding = reason or ("" if score is None else f"score {score:.3f}")
    return Verdict(passed, expectation, finding, score, invert_score=False)


def _check_unit(label: str, score: float) -> None:
    if not 0.0 <= score <= 1.0:
        # A score outside 0..1 would outweigh every other assertion in the case's mean.
        raise CannotJudge(f"{label} returned score {score:g}, outside 0..1")


async def check_python(spec: AssertionSpec, ctx: EvalContext) -> Verdict:
    result = await call(spec.value, "get_assert", ctx.output, ctx.script_context(spec.config))
    return python_verdict(spec, result)


SCRIPT_CHECKS: dict[str, Check] = {"python": check_python}

"""Datasets beside a suite: JSONL rows (one case each) and CSV in promptfoo's column format.

CSV columns are variables, except promptfoo's special ones: `__expected` and `__expected1..N`
(one assertion each, in the short form below), `__description`, `__metric` (every assertion
of the row), `__threshold` (the case's), `__metadata:KEY` (`KEY[]` splits on commas),
`__config:__expectedN:threshold`, and our `__id`.

The short form of an assertion, as promptfoo reads it: `TYPE:VALUE`, `not-TYPE:VALUE`,
`TYPE(THRESHOLD):VALUE` (`levenshtein(5):hello`, `similar(0.8):hi`), a bare `is-json`;
`contains-any:a,b` (and the other list types) split on commas; `grade:RUBRIC` and
`llm-rubric:RUBRIC`; `python:CODE` and `file://checks.py:function`; anything else is `equals`
against the whole cell. JavaScript forms (`fn:`, `javascript:`, `eval:`, `file://x.js`) are
refused: the gateway runs Python checks.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.wording import plural
from gateway.core.yamlfile import MIB, data_problem, read_text

# Datasets are parsed by C code (json, csv) and can be larger than YAML files; a 100 MB file
# is still refused before it is read.
MAX_DATASET_BYTES = 64 * MIB

_LIST_TYPES = {"contains-any", "contains-all", "icontains-any", "icontains-all"}
_RAW_TYPES = {"contains-json", "is-json"}
# promptfoo gives these a threshold from the short form (0.75 unless written; similar 0.8).
_THRESHOLD_TYPES = {"levenshtein", "rouge-n", "similar"}
_MAXIMUM_TYPES = {"cost", "latency"}
# promptfoo types the gateway does not run: named in the error instead of misread as equals.
PROMPTFOO_ONLY = {
    "answer-relevance", "classifier", "contains-html", "contains-sql", "contains-xml",
    "context-faithfulness", "context-recall", "context-relevance", "conversation-relevance",
    "factuality", "g-eval", "gleu", "guardrails", "is-html", "is-refusal", "is-sql",
    "is-valid-function-call", "is-valid-openai-function-call", "javascript", "meteor",
    "model-graded-closedqa", "model-graded-factuality", "moderation", "perplexity",
    "perplexity-score", "pi", "ruby", "select-best", "tool-call-f1", "webhook",
}  # fmt: skip
_JAVASCRIPT = ("javascript:", "fn:", "eval:")


def _short_form(known: set[str]) -> re.Pattern[str]:
    names = "|".join(sorted((re.escape(n) for n in known), key=len, reverse=True))
    return re.compile(rf"^(not-)?({names})(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$")


def expected_assertion(cell: str, known_types: set[str]) -> dict[str, Any]:
    """One `__expected` cell as an assertion (its text already trimmed and non-empty)."""
    if cell.startswith(_JAVASCRIPT) or (cell.startswith("file://") and cell.endswith(".js")):
        raise ValueError(
            f"{cell[:40]!r} is a JavaScript assertion; the gateway runs Python: write "
            "python:EXPRESSION (of `output`) or file://checks.py:function"
        )
    if cell.startswith("grade:"):
        return {"type": "llm-rubric", "value": cell.removeprefix("grade:")}
    if cell.startswith("llm-rubric:"):
        return {"type": "llm-rubric", "value": cell.removeprefix("llm-rubric:")}
    if cell.startswith("python:"):
        return {"type": "python", "value": cell.removeprefix("python:").strip()}
    if cell.startswith("file://") and (cell.endswith(".py") or ".py:" in cell):
        return {"type": "python", "value": cell}
    match = _short_form(known_types | PROMPTFOO_ONLY).match(cell)
    if match is None:
        return {"type": "equals", "value": cell}
    negated, kind, threshold, value = match.groups()
    if kind in PROMPTFOO_ONLY:
        raise ValueError(f"{kind!r} is a promptfoo assertion type the gateway does not run")
    full = (negated or "") + kind
    if kind in _LIST_TYPES:
        items = [item.strip() for item in value.split(",")] if value else None
        return {"type": full, "value": items}
    if kind in _RAW_TYPES:
        return {"type": full, "value": value or None}
    spec: dict[str, Any] = {"type": full, "value": value.strip() if value is not None else None}
    if kind in _THRESHOLD_TYPES:
        spec["threshold"] = float(threshold) if threshold else (0.8 if kind == "similar" else 0.75)
    elif kind in _MAXIMUM_TYPES:
        spec["value"] = float(threshold) if threshold else _number(spec["value"])
    elif threshold:
        spec["threshold"] = float(threshold)
    return spec


def _number(text: str | None) -> Any:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def read_dataset(path: Path, known_types: set[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line, case as a mapping) for each row; ConfigError names the file and line."""
    if not path.exists():
        raise ConfigError(f"{path}: dataset file not found")
    # Spreadsheet programs start their CSV with a byte order mark; it is not data.
    text = read_text(path, MAX_DATASET_BYTES, "split it into several suites").removeprefix("\ufeff")
    if path.suffix == ".jsonl":
        return _jsonl_rows(path, text)
    if path.suffix == ".csv":
        return _csv_rows(path, text, known_types)
    raise ConfigError(f"{path}: a dataset is a .jsonl or .csv file")


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:  # an int of 5,000 digits; deep nesting
            reason = str(exc).split(";")[0] if isinstance(exc, ValueError) else "nested too deep"
            raise ConfigError(f"{path}:{number}: not usable JSON: {reason}") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: each line must be a JSON object")
        problem = data_problem(row)
        if problem is not None:
            raise ConfigError(f"{path}:{number}: {problem}")
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, text: str, known: set[str]) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = [column.strip() for column in next(reader, [])]
        for values in reader:
            number = reader.line_num
            if not values:
                continue  # a blank line
            if len(values) != len(header):
                raise ConfigError(
                    f"{path}:{number}: {plural(len(values), 'value')} but the header names "
                    f"{plural(len(header), 'column')} (quote values that contain commas)"
                )
            problem = data_problem(values)
            if problem is not None:
                raise ConfigError(f"{path}:{number}: {problem}")
            try:
                rows.append((number, _csv_case(header, values, known)))
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: {exc}") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    return rows


_EXPECTED = re.compile(r"__expected(\d*)")
_UNSUPPORTED = {"__prefix", "__suffix", "__providerOutput"}


def _csv_case(header: list[str], values: list[str], known: set[str]) -> dict[str, Any]:
    case: dict[str, Any] = {"vars": {}}
    asserts: list[dict[str, Any]] = []
    configs: dict[int, float] = {}
    metric = None
    for column, value in zip(header, values, strict=True):
        expected = _EXPECTED.fullmatch(column)
        if expected:
            if value.strip():
                try:
                    asserts.append(expected_assertion(value.strip(), known))
                except ValueError as exc:
                    raise ValueError(f"{column}: {exc}") from None
        elif column == "__id":
            case["id"] = value
        elif column == "__description":
            case["description"] = value
        elif column == "__metric":
            metric = value or None
        elif column == "__threshold":
            case["threshold"] = _float(column, value)
        elif column.startswith("__metadata:"):
            _metadata(case, column.removeprefix("__metadata:"), value)
        elif column.startswith("__config:"):
            index, threshold = _config(column, value)
            configs[index] = threshold
        elif column in _UNSUPPORTED:
            raise ValueError(f"the {column} column is not supported by the gateway")
        else:
            case["vars"][column] = value
    for index, threshold in configs.items():
        if index >= len(asserts):
            raise ValueError(
                f"__config names assertion {index + 1}, and the row has {len(asserts)}"
            )
        asserts[index]["threshold"] = threshold
    if metric:
        for spec in asserts:
            spec["metric"] = metric
    if asserts:
        case["assert"] = asserts
    return case


def _float(column: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{column}: {value!r} is not a number") from None


def _metadata(case: dict[str, Any], key: str, value: str) -> None:
    if not value.strip():
        return
    metadata = case.setdefault("metadata", {})
    if key.endswith("[]"):
        items = re.split(r"(?<!\\),", value)
        metadata[key[:-2]] = [item.strip().replace("\\,", ",") for item in items]
    else:
        metadata[key] = value


def _config(column: str, value: str) -> tuple[int, float]:
    parts = column.removeprefix("__config:").split(":")
    target = _EXPECTED.fullmatch(parts[0]) if len(parts) == 2 else None
    if target is None or parts[1] != "threshold":
        raise ValueError(
            f"{column}: write __config:__expected:threshold or __config:__expectedN:threshold"
        )
    index = int(target.group(1)) - 1 if target.group(1) else 0
    if index < 0:
        raise ValueError(f"{column}: assertions are numbered from 1")
    return index, _float(column, value)

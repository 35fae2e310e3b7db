"""User-authored file parsers under hostile input: any bytes end as a value or as the project's
own error (ConfigError, PromptError with `file:line: message` lines), never another exception,
a hang or a blown heap; the CLI turns them into a short message and exit code 2.

First one regression test per crash the fuzzing found, then the hypothesis properties
(derandomized, fixed example counts: the counts are in docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.core.config import GatewayConfig, load_config
from gateway.core.errors import ConfigError
from gateway.core.yamlfile import MAX_DEPTH, MIB
from gateway.evals.suite import Suite, load_suite
from gateway.prompts.files import PromptError, PromptFile, parse_prompt

ROOT = Path(__file__).resolve().parent.parent
SET_VAR, EMPTY_VAR = "GATEWAY_FUZZ_SECRET", "GATEWAY_FUZZ_EMPTY"
# A hang is a failure: each parse gets this long (a bound, not a speed assertion).
HANG_SECONDS = 60


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SET_VAR, "sk-fuzz")
    monkeypatch.setenv(EMPTY_VAR, "")


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang() -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"the parser ran for more than {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def config_outcome(path: Path) -> GatewayConfig | ConfigError:
    with no_hang():
        try:
            return load_config(path)
        except ConfigError as exc:
            return exc


def suite_outcome(path: Path) -> Suite | ConfigError:
    with no_hang():
        try:
            return load_suite(path)
        except ConfigError as exc:
            return exc


def prompt_outcome(path: Path, text: str | None = None) -> PromptFile | PromptError:
    with no_hang():
        try:
            return parse_prompt(path, text)
        except PromptError as exc:
            return exc


def assert_clear(error: ConfigError, folder: Path) -> None:
    """Every line names a file in folder (with its line when known) and says something."""
    lines = str(error).splitlines()
    assert lines, "an empty error message"
    for line in lines:
        assert line.startswith(str(folder)), line
        assert line.split(": ", 1)[1:] != [""], line


def assert_problem_lines(error: PromptError, path: Path) -> None:
    assert error.problems
    for problem in error.problems:
        assert len(problem.splitlines()) == 1, problem
        head, _, message = problem.partition(": ")
        assert head.startswith(f"{path}:"), problem
        assert head.removeprefix(f"{path}:").isdigit(), problem
        assert message.strip(), problem


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def config_error(tmp_path: Path, text: str | bytes) -> str:
    outcome = config_outcome(write(tmp_path / "gateway.yaml", text))
    assert isinstance(outcome, ConfigError), outcome
    assert_clear(outcome, tmp_path)
    return str(outcome)


def suite_error(tmp_path: Path, text: str | bytes, **files: str | bytes) -> str:
    for name, content in files.items():
        write(tmp_path / name.replace("_", "."), content)
    outcome = suite_outcome(write(tmp_path / "suite.yaml", text))
    assert isinstance(outcome, ConfigError), outcome
    assert_clear(outcome, tmp_path)
    return str(outcome)


def prompt_problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = write(tmp_path / "greet.prompt", text)
    outcome = prompt_outcome(path)
    assert isinstance(outcome, PromptError), outcome
    assert_problem_lines(outcome, path)
    return outcome.problems


def bomb(levels: int, fanout: int, indent: str = "") -> str:
    """Billion laughs: each level an anchored list of `fanout` aliases of the level below."""
    lines = [f"{indent}l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * fanout)
        lines.append(f"{indent}l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


MINIMAL_CONFIG = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
SUITE_HEAD = "target: model:m\ncases:\n  - assert: [{type: contains, value: x}]\n"
PROMPT = "---\nmodel: m\n{front}---\nHello\n"


# Regressions: one per crash found (each raised something other than the project's error).


def test_config_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # was UnicodeDecodeError
    assert "gateway.yaml:2: not UTF-8 text (byte 0xff)" in config_error(
        tmp_path, b"model_list: []\n\xff\n"
    )


def test_suite_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # was UnicodeDecodeError
    assert "not UTF-8 text" in suite_error(tmp_path, b"\xfe\xff" + SUITE_HEAD.encode())


@pytest.mark.parametrize("kind", ["config", "suite", "prompt"])
def test_out_of_range_date_is_a_string_not_a_value_error(tmp_path: Path, kind: str) -> None:
    # was ValueError("month must be in 1..12") from PyYAML's implicit timestamps; dates now
    # stay strings, as in JSON (a date object would also fail to serialize in API answers)
    if kind == "config":
        path = write(tmp_path / "gateway.yaml", "general_settings:\n  since: 2001-13-45\n")
        config = config_outcome(path)
        assert isinstance(config, GatewayConfig), config
        assert config.general_settings == {"since": "2001-13-45"}
    elif kind == "suite":
        suite = suite_outcome(write(tmp_path / "s.yaml", SUITE_HEAD + "description: 2001-13-45\n"))
        assert isinstance(suite, Suite), suite
        assert suite.spec.description == "2001-13-45"
    else:  # dotpromptz, which checks prompt files too, still reads dates: its refusal is kept
        problems = prompt_problems(tmp_path, PROMPT.format(front="metadata: {at: 2001-13-45}\n"))
        assert problems == [
            f"{tmp_path / 'greet.prompt'}:1: dotpromptz cannot parse this file: "
            f"month must be in 1..12"
        ]


@pytest.mark.parametrize(
    ("value", "expected", "was"),
    [
        ("!!bool maybe", "'maybe' is not a boolean", "KeyError"),
        ("!!int ''", "'' is not an integer", "IndexError"),
        ("!!int +", "'+' is not an integer", "IndexError"),
        ("!!timestamp x", "!!timestamp values are not supported", "AttributeError"),
    ],
)
def test_explicit_tag_that_does_not_fit_is_an_error(
    tmp_path: Path, value: str, expected: str, was: str
) -> None:
    message = config_error(tmp_path, f"general_settings:\n  x: {value}\n")
    assert f"gateway.yaml:2: {expected}" in message, was


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!binary aGk=", "!!binary values are not supported"),
        ("!!set {a: null}", "!!set values are not supported"),
        ("{1: one}", "mapping keys must be strings, not an integer '1' (quote it)"),
        ("{on: 1}", "mapping keys must be strings, not a boolean 'on' (quote it)"),
    ],
)
def test_values_json_cannot_carry_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    # were accepted into litellm_params' pass-through parameters, which are merged into every
    # request body: orjson cannot serialize bytes, sets or non-string keys
    message = config_error(tmp_path, MINIMAL_CONFIG + f"      extra_body: {value}\n")
    assert f"gateway.yaml:5: {expected}" in message


@pytest.mark.parametrize("kind", ["config", "suite", "prompt"])
def test_int_of_5000_digits_is_an_error_not_a_value_error(tmp_path: Path, kind: str) -> None:
    # was ValueError("Exceeds the limit (4300 digits) for integer string conversion")
    digits = "7" * 5000
    if kind == "config":
        message = config_error(tmp_path, f"router_settings:\n  num_retries: {digits}\n")
    elif kind == "suite":
        message = suite_error(tmp_path, SUITE_HEAD + f"repeat: {digits}\n")
    else:
        message = "\n".join(prompt_problems(tmp_path, PROMPT.format(front=f"seed: {digits}\n")))
    assert "cannot be read as an integer: Exceeds the limit (4300 digits)" in message
    assert "set_int_max_str_digits" not in message  # advice for Python programmers, not authors


@pytest.mark.parametrize("kind", ["config", "suite", "prompt"])
def test_nesting_5000_deep_is_refused_not_a_recursion_error(tmp_path: Path, kind: str) -> None:
    # was RecursionError from PyYAML's recursive composer
    deep = "[" * 5000 + "]" * 5000
    expected = f"values nested more than {MAX_DEPTH} levels deep"
    if kind == "config":
        assert expected in config_error(tmp_path, f"general_settings:\n  x: {deep}\n")
    elif kind == "suite":
        assert expected in suite_error(tmp_path, SUITE_HEAD + f"options: {{x: {deep}}}\n")
    else:
        problems = prompt_problems(tmp_path, PROMPT.format(front=f"metadata: {{x: {deep}}}\n"))
        assert expected in problems[0]


@pytest.mark.parametrize(
    ("escape", "expected"),
    [
        ('"a\\0b"', "a string contains a NUL character"),
        ('"\\ud800"', "a string contains a lone surrogate"),
    ],
)
def test_yaml_escapes_for_nul_and_lone_surrogates_are_refused(
    tmp_path: Path, escape: str, expected: str
) -> None:
    # were accepted: PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded
    # (UnicodeEncodeError wherever the value is written, sent or printed)
    message = config_error(
        tmp_path, MINIMAL_CONFIG.replace("model_name: m", f"model_name: {escape}")
    )
    assert f"gateway.yaml:2: {expected}" in message


def test_prompt_body_with_a_nul_is_refused(tmp_path: Path) -> None:
    # was accepted, then `prompts sync` failed on PostgreSQL (text cannot contain NUL)
    problems = prompt_problems(tmp_path, "---\nmodel: m\n---\nHello\n\x00 {{name}}\n")
    assert problems == [
        f"{tmp_path / 'greet.prompt'}:5: the file contains a NUL character (\\0); remove it"
    ]


def test_jsonl_nul_escape_is_refused(tmp_path: Path) -> None:
    row = '{"vars": {"q": "a\\u0000b"}}\n'
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.jsonl\n", data_jsonl=row)
    assert "data.jsonl:1: a string contains a NUL character" in message


def test_self_referencing_alias_in_litellm_params_is_refused(tmp_path: Path) -> None:
    # was RecursionError: extra params are walked to resolve os.environ/ references
    message = config_error(tmp_path, MINIMAL_CONFIG + "      extra: &loop [*loop]\n")
    assert "gateway.yaml:5: alias *loop refers to a value that contains it (a cycle)" in message


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    # was a hang: 9 levels of 9 aliases stand for 387,420,489 strings that validation walked
    text = MINIMAL_CONFIG + "      extra:\n" + bomb(9, 9, indent="        ")
    message = config_error(tmp_path, text)
    assert "more than 1,000,000 values once its aliases are expanded (an alias bomb?)" in message


def test_alias_bomb_in_a_suite_and_a_prompt_is_refused(tmp_path: Path) -> None:
    assert "alias bomb" in suite_error(tmp_path, SUITE_HEAD + "options:\n" + bomb(9, 9, "  "))
    front = "metadata:\n" + bomb(9, 9, "  ")
    assert "alias bomb" in prompt_problems(tmp_path, PROMPT.format(front=front))[0]


def test_hundred_megabyte_files_are_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.mkdir()
    for name in ("gateway.yaml", "suite.yaml", "greet.prompt", "data.jsonl"):
        with (huge / name).open("wb") as handle:
            handle.truncate(100 * MIB)  # sparse: costs no disk
    outcome = config_outcome(huge / "gateway.yaml")
    assert isinstance(outcome, ConfigError)
    assert (
        str(outcome)
        == f"{huge / 'gateway.yaml'}: larger than 4 MiB, the most read (split the file)"
    )
    assert "larger than 4 MiB" in str(suite_outcome(huge / "suite.yaml"))
    prompt = prompt_outcome(huge / "greet.prompt")
    assert isinstance(prompt, PromptError)
    assert prompt.problems[0].startswith(f"{huge / 'greet.prompt'}:1: larger than 1 MiB")
    write(huge / "suite.yaml", SUITE_HEAD + "dataset: data.jsonl\n")
    assert "data.jsonl: larger than 64 MiB" in str(suite_outcome(huge / "suite.yaml"))


def test_env_variable_set_empty_for_model_is_a_config_error(tmp_path: Path) -> None:
    # was pydantic's ValidationError escaping (the value is checked again after resolving)
    text = MINIMAL_CONFIG.replace("openai/m", f"os.environ/{EMPTY_VAR}")
    message = config_error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'gateway.yaml'}:4: model_list[0].litellm_params.model: environment "
        f"variable {EMPTY_VAR} holds an invalid value: String should have at least 1 character"
    )


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("router_settings: {cooldown_time: .inf}", "router_settings.cooldown_time"),
        ("router_settings: {retry_after: .nan}", "router_settings.retry_after"),
        (MINIMAL_CONFIG + "      weight: .inf", "model_list[0].litellm_params.weight"),
        (
            MINIMAL_CONFIG + "    model_info: {input_cost_per_token: .nan}",
            "model_list[0].model_info.input_cost_per_token",
        ),
    ],
)
def test_config_infinity_and_nan_are_refused(tmp_path: Path, setting: str, key: str) -> None:
    # were accepted: an infinite weight takes all traffic, an infinite wait never ends
    assert f"{key}: Input should be a finite number" in config_error(tmp_path, setting + "\n")


def test_csv_row_shorter_than_its_header_is_an_error(tmp_path: Path) -> None:
    # was AttributeError: 'NoneType' object has no attribute 'partition' (__expected missing)
    message = suite_error(
        tmp_path, SUITE_HEAD + "dataset: data.csv\n", data_csv="question,__expected\nhi\n"
    )
    assert message == (
        f"{tmp_path / 'data.csv'}:2: 1 value but the header names 2 columns "
        f"(quote values that contain commas)"
    )


def test_csv_row_longer_than_its_header_is_an_error(tmp_path: Path) -> None:
    # was "vars.None.[key]: Input should be a valid string" (the extra values' key is None)
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.csv\n", data_csv="q\na,b\n")
    assert "data.csv:2: 2 values but the header names 1 column" in message


def test_csv_field_over_the_csv_limit_is_an_error(tmp_path: Path) -> None:
    # was _csv.Error: field larger than field limit (131072)
    content = "q\n" + "x" * 200_000 + "\n"
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.csv\n", data_csv=content)
    assert "data.csv:2: not valid CSV: field larger than field limit" in message


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl"])
def test_dataset_not_utf8_is_an_error(tmp_path: Path, name: str) -> None:
    # was UnicodeDecodeError
    message = suite_error(tmp_path, SUITE_HEAD + f"dataset: {name}\n", **{name: b"q\n\xff\n"})
    assert f"{name}:2: not UTF-8 text (byte 0xff)" in message


def test_jsonl_int_of_5000_digits_is_an_error(tmp_path: Path) -> None:
    # was ValueError from json (Python's limit on int digits)
    row = '{"vars": {"n": ' + "9" * 5000 + "}}\n"
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.jsonl\n", data_jsonl=row)
    assert "data.jsonl:1: not usable JSON: Exceeds the limit (4300 digits)" in message


def test_jsonl_nested_100000_deep_is_an_error(tmp_path: Path) -> None:
    # was RecursionError from json
    row = "[" * 100_000 + "]" * 100_000 + "\n"
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.jsonl\n", data_jsonl=row)
    assert "data.jsonl:1: not usable JSON: nested too deep" in message


def test_jsonl_row_nested_past_the_limit_is_refused(tmp_path: Path) -> None:
    # parsed, but deeper than serializers go (orjson stops at 255): refused like YAML
    inner = '{"a": ' * 100 + "1" + "}" * 100
    row = '{"vars": {"x": ' + inner + "}}\n"
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.jsonl\n", data_jsonl=row)
    assert f"data.jsonl:1: values nested more than {MAX_DEPTH} levels deep" in message


def test_dataset_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    # was IsADirectoryError
    (tmp_path / "data.jsonl").mkdir()
    message = suite_error(tmp_path, SUITE_HEAD + "dataset: data.jsonl\n")
    assert message == f"{tmp_path / 'data.jsonl'}: not a regular file"


@pytest.mark.parametrize(
    ("assertion", "expected"),
    [
        ("{type: cost, value: .nan}", "value must be a number >= 0"),
        ("{type: contains, value: x, weight: .inf}", "weight: Input should be a finite number"),
        ("{type: latency, threshold: .nan}", "threshold: Input should be a finite number"),
    ],
)
def test_assertion_nan_and_infinity_are_refused(
    tmp_path: Path, assertion: str, expected: str
) -> None:
    # were accepted: a NaN maximum fails every answer, an infinite weight makes scores NaN
    text = f"target: model:m\ncases:\n  - assert: [{assertion}]\n"
    assert expected in suite_error(tmp_path, text)


def test_assertion_schema_with_a_list_as_dialect_is_an_error(tmp_path: Path) -> None:
    # was TypeError: unhashable type: 'list' (jsonschema looks $schema up in a dict)
    text = "target: model:m\ncases:\n  - assert: [{type: json-schema, value: {$schema: [1]}}]\n"
    assert "value has a $schema that is not a string" in suite_error(tmp_path, text)


def test_prompt_schema_with_a_list_as_dialect_is_a_problem(tmp_path: Path) -> None:
    # was TypeError: unhashable type: 'list'
    front = "input: {schema: {type: object, properties: {name: {type: string}}, $schema: [1]}}\n"
    problems = prompt_problems(tmp_path, PROMPT.format(front=front))
    assert problems == [
        f"{tmp_path / 'greet.prompt'}:3: input.schema has a $schema that is not a string "
        f"(it names a JSON Schema dialect)"
    ]


def test_prompt_schema_with_a_remote_ref_is_refused_unfetched(tmp_path: Path) -> None:
    # was a network fetch of the URI while checking input.default, then
    # _WrappedReferencingError (Unresolvable); at call time it would fetch on every request
    front = (
        "input:\n  schema: {type: object, properties: {name: {$ref: 'http://127.0.0.1:9/s'}}}\n"
        "  default: {name: Ann}\n"
    )
    problems = prompt_problems(tmp_path, PROMPT.format(front=front))
    assert problems == [
        f"{tmp_path / 'greet.prompt'}:4: input.schema has $ref 'http://127.0.0.1:9/s' pointing "
        f"outside the schema (use '#/$defs/...')"
    ]


def test_prompt_schema_with_a_dangling_ref_is_refused(tmp_path: Path) -> None:
    # was Unresolvable from jsonschema while checking input.default (and on every call)
    front = (
        "input:\n  schema: {type: object, properties: {name: {$ref: '#/$defs/nope'}}}\n"
        "  default: {name: Ann}\n"
    )
    problems = prompt_problems(tmp_path, PROMPT.format(front=front))
    assert problems == [
        f"{tmp_path / 'greet.prompt'}:4: input.schema has $ref '#/$defs/nope' pointing to "
        f"nothing in the schema"
    ]


def test_prompt_schema_with_a_local_ref_still_works(tmp_path: Path) -> None:
    front = (
        "input:\n  schema:\n    type: object\n    properties: {name: {$ref: '#/$defs/name'}}\n"
        "    $defs: {name: {type: string}}\n"
    )
    path = write(tmp_path / "greet.prompt", PROMPT.format(front=front))
    prompt = prompt_outcome(path)
    assert isinstance(prompt, PromptFile), prompt


@pytest.mark.parametrize(
    "body", ["{{" * 500_000, "{{{{raw}}}}" * 90_000, "{{!--" * 200_000, "{{#if a}}" * 100_000]
)
def test_template_scan_of_a_megabyte_of_open_tags_ends(tmp_path: Path, body: str) -> None:
    # was quadratic: 40 KB of "{{" took ~55 s to scan, a megabyte would take hours
    problems = prompt_problems(tmp_path, "---\nmodel: m\n---\n" + body)
    assert problems


def test_prompt_text_with_a_lone_surrogate_is_a_problem(tmp_path: Path) -> None:
    # stored text (not from a file) can hold what UTF-8 cannot encode
    outcome = prompt_outcome(tmp_path / "greet.prompt", "---\nmodel: \ud800\n---\nHi\n")
    assert isinstance(outcome, PromptError)
    assert outcome.problems == [
        f"{tmp_path / 'greet.prompt'}:2: the file contains a lone surrogate (\\ud800-\\udfff), "
        f"which is not text; remove it"
    ]


# The CLI: the same cases end as a short message on stderr and exit code 2.


def gateway_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_DATA_DIR": str(cwd / "data")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_cli_config_check_refuses_an_alias_bomb(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.yaml", "general_settings:\n" + bomb(9, 9, "  "))
    result = gateway_cli("config", "check", str(path), cwd=tmp_path)
    assert_one_line_exit_2(result, f"{path}:8: the document stands for more than 1,000,000")


def test_cli_config_check_names_a_tag_that_does_not_fit(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.yaml", "general_settings:\n  debug: !!bool maybe\n")
    result = gateway_cli("config", "check", str(path), cwd=tmp_path)
    assert_one_line_exit_2(result, f"{path}:2: 'maybe' is not a boolean")


def test_cli_eval_run_with_a_broken_dataset_exits_2(tmp_path: Path) -> None:
    write(tmp_path / "data.csv", "question,__expected\nhi\n")
    suite = write(tmp_path / "suite.yaml", SUITE_HEAD + "dataset: data.csv\n")
    result = gateway_cli("eval", "run", str(suite), "--no-store", cwd=tmp_path)
    assert_one_line_exit_2(result, "data.csv:2: 1 value but the header names 2 columns")


def test_cli_eval_validate_with_invalid_utf8_exits_2(tmp_path: Path) -> None:
    suite = write(tmp_path / "suite.yaml", SUITE_HEAD.encode() + b"description: \xc3\x28\n")
    result = gateway_cli("eval", "validate", str(suite), cwd=tmp_path)
    assert_one_line_exit_2(result, f"{suite}:4: not UTF-8 text (byte 0xc3)")


def test_cli_prompts_validate_with_a_deep_front_matter_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "greet.prompt", PROMPT.format(front="metadata: " + "[" * 200 + "\n"))
    result = gateway_cli("prompts", "validate", str(path), cwd=tmp_path)
    assert_one_line_exit_2(result, f"{path}:3: values nested more than {MAX_DEPTH} levels deep")


# Properties. Inputs: raw bytes, YAML-ish token soup, and mutations of valid documents (keys
# dropped or added, values of the wrong type, NaN, huge numbers, NUL bytes, deep nesting,
# shared subtrees that dump as anchors and aliases), then text-level damage.

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

CONFIG_BASE: dict[str, Any] = {
    "model_list": [
        {
            "model_name": "gpt",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": "http://127.0.0.1:9/v1",
                "api_key": f"os.environ/{SET_VAR}",
                "rpm": 60,
                "weight": 1.5,
                "timeout": 30,
                "temperature": 0.2,
                "extra_headers": {"x-team": "a"},
            },
            "model_info": {"id": "gpt-1", "mode": "chat", "input_cost_per_token": 1e-6},
        },
        {"model_name": "small", "litellm_params": {"model": "openai/small"}},
    ],
    "router_settings": {
        "routing_strategy": "simple-shuffle",
        "num_retries": 2,
        "timeout": 30.0,
        "fallbacks": [{"gpt": ["small"]}],
        "allowed_fails": 3,
        "cooldown_time": 5,
    },
    "litellm_settings": {"drop_params": True},
    "general_settings": {"master_key": "sk-1"},
    "gateway": {"max_body_bytes": 1048576, "default_max_tokens": 256, "log_bodies": False},
}

SUITE_BASE: dict[str, Any] = {
    "description": "greeting",
    "target": "model:gpt",
    "baseline": "prompt:greet@production",
    "cases": [
        {
            "id": "ann",
            "vars": {"name": "Ann"},
            "assert": [
                {"type": "contains", "value": "Ann"},
                {"type": "cost", "value": 0.01},
                {"type": "json-schema", "value": {"type": "object"}},
                {"type": "rouge-n", "value": "hello there Ann", "n": 2, "threshold": 0.5},
            ],
        },
        {"vars": {"name": "Bo"}, "threshold": 0.5},
    ],
    "defaults": {"vars": {"mood": "fine"}, "assert": [{"type": "regex", "value": "^H"}]},
    "threshold": 0.9,
    "repeat": 1,
    "concurrency": 2,
    "options": {"temperature": 0},
}

FRONT_BASE: dict[str, Any] = {
    "model": "gpt",
    "description": "greets",
    "config": {"temperature": 0.3, "max_tokens": 100, "stop": ["\n\n"]},
    "input": {
        "schema": {"name": "string", "items?(array)": "string", "mood?": "string, how they feel"},
        "default": {"mood": "fine"},
    },
    "output": {"format": "json", "schema": {"answer": "string"}},
    "metadata": {"owner": "team-a"},
}
BODY = (
    '{{role "system"}}\nYou are kind.\n{{role "user"}}\n'
    "Hello {{name}}{{#each items}} {{this}}{{/each}}{{#if mood}} ({{mood}}){{/if}}\n"
)

YAML_TOKENS = [
    "&a ", "*a", "&b ", "*b", "<<: *a", "- ", ": ", "? ", "{", "}", "[", "]", ",", "\t",
    "!!binary ", "!!python/object:os.system ", "!!str ", "!!int ", "!!float ", "!!set ",
    "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'", '"', "\\", "#", "|\n  ", ">-\n",
    "\x00", "\ufeff", "\x85", "\u2028", "2001-13-45", "2024-02-30 25:61:61", "9" * 4400,
    "!!bool maybe", "!!int ", "!!timestamp ", "!!omap ", "{1: 2}", "on: ", "1: ",
    ".nan", ".inf", "-.inf", "0x1F", "0o17", "1_000", "1:20:30", "~", "null", "yes", "\n",
    "  ", "model_list", "router_settings", "gateway", "target", "cases", "assert", "input",
    "schema", "$ref", "$schema", "os.environ/", "os.environ/" + EMPTY_VAR, "\r\n", "=",
]  # fmt: skip
RAW_SCALARS = [
    "2001-13-45", "2024-02-30 25:61:61", "9" * 4400, "0x" + "f" * 60, "1:2:3", ".nan", ".inf",
    "-.inf", "1e999", "-0", "0o17", "!!bool maybe", "!!int ''", "!!int +", "!!float x",
    "!!timestamp x", "!!binary aGk=", "!!binary !", "!!set {a: null}", "!!omap [a: 1]", "!!str",
    "!!null x", "!!str [1]", "&x 1", "*x", "*undefined", "{1: 2}", "{on: 1}", "{null: 1}",
    '"\\x00"', '"a\\0b"', '"\\ud800"', '"\\U0010ffff"', '"\\x85"', "''", "|\n  x\n",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "os.environ/" + EMPTY_VAR, "os.environ/GATEWAY_FUZZ_UNSET", "os.environ/" + SET_VAR,
    "model:gpt", "prompt:greet@", "registry:x@0", "-1", "101", "0.5", "true", "null", "[]", "{}",
]  # fmt: skip
TAG_TOKENS = [
    "{{", "}}", "{{{", "}}}", "{{{{", "}}}}", "{{{{/", "{{!--", "--}}", "{{!", "{{~", "~}}",
    "{{#if", "{{#each", "{{#with", "{{/if}}", "{{/each}}", "{{else}}", "{{^}}", "{{>p}}",
    '{{role "user"}}', "{{role}}", "{{@root.x}}", "{{../x}}", "{{this}}", "{{lookup a b}}",
    "(", ")", " ", "\n", "\\", "name", "=", '"', "'", "[", "]", "x.y",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**256), max_value=2**256),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "a\x00b", "\t", "os.environ/" + SET_VAR, "model:gpt", "x" * 300]),
)
keys = st.one_of(
    st.text(max_size=12), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def _containers(doc: Any) -> list[Any]:
    """Every dict and list in doc (iteratively: documents may be shared or cyclic)."""
    found, stack, seen = [], [doc], set()
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list) and id(item) not in seen:
            seen.add(id(item))
            found.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3, 5]))):
        target = draw(st.sampled_from(_containers(doc)))
        slots = list(target.keys()) if isinstance(target, dict) else list(range(len(target)))
        op = draw(st.sampled_from(["drop", "replace", "add", "nest", "share", "cycle"]))
        slot = draw(st.sampled_from(slots)) if slots else None
        if op == "drop" and slot is not None:
            del target[slot]
        elif op == "replace" and slot is not None:
            target[slot] = draw(values)
        elif op == "nest" and slot is not None:
            value = target[slot]
            for _ in range(draw(st.sampled_from([1, 10, MAX_DEPTH - 2, MAX_DEPTH + 5]))):
                value = draw(st.sampled_from([[value], {"k": value}]))
            target[slot] = value
        elif op in ("share", "cycle") and slot is not None:
            # the same object twice dumps as an anchor and an alias; inside itself, a cycle
            shared = target if op == "cycle" else draw(st.sampled_from(_containers(doc)))
            target[slot] = shared
        elif isinstance(target, dict):
            target[draw(keys)] = draw(values)
        else:
            target.append(draw(values))
    return doc


def dump(doc: Any, flow: bool | None) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, default_flow_style=flow, sort_keys=False)


@st.composite
def damaged(draw: st.DrawFn, text: str) -> bytes:
    """Text-level damage: tokens spliced in, tabs, duplicated lines, a BOM, bad UTF-8."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["scalar", "scalar", "token", "tab", "duplicate", "cut"]))
        colons = [i + 2 for i in range(len(text)) if text.startswith(": ", i)]
        if op == "scalar" and colons:
            # a value written as YAML text: wrong types, escapes and tags, in a valid position
            start = draw(st.sampled_from(colons))
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            text = text[:start] + draw(st.sampled_from(RAW_SCALARS)) + text[end:]
        elif op == "token":
            text = text[:at] + draw(st.sampled_from(YAML_TOKENS)) + text[at:]
        elif op == "tab":
            text = text.replace("  ", "\t", 1)
        elif op == "duplicate":
            lines = text.split("\n")
            index = draw(st.integers(0, len(lines) - 1))
            text = "\n".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])
        else:
            text = text[:at]
    raw = text.encode("utf-8")
    if draw(st.booleans()) and draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    return raw


def yaml_bytes(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    structured = st.builds(dump, mutated(base), st.sampled_from([None, True, False])).flatmap(
        damaged
    )
    soup = st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=8), max_size=40).map(
        lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
    )
    bombs = st.builds(
        lambda levels, fanout, at: (
            (dump(base, False) + "\n" + bomb(levels, fanout)).encode()
            if at == 0
            else (dump(base, None) + "bomb:\n" + bomb(levels, fanout, "  ")).encode()
        ),
        st.integers(2, 12),
        st.integers(2, 12),
        st.integers(0, 1),
    )
    return st.one_of(
        structured,
        structured,
        structured,
        soup,
        st.binary(max_size=200),
        st.builds(lambda doc: dump(doc, None).encode(), values),
        bombs,
    )


def record(outcome: object) -> None:
    """Label the example for --hypothesis-show-statistics: a value, or which kind of error."""
    if isinstance(outcome, Exception):
        first = str(outcome).splitlines()[0]
        message = first.split(": ", 1)[-1]
        event("error: " + re.sub(r"'[^']*'|\d+", "_", message)[:48])
    else:
        event("value")


def check_config(config: GatewayConfig) -> None:
    """What a config that loads promises its users: finite numbers, known fallback aliases."""
    aliases = set(config.aliases())
    for rule in config.router_settings.fallbacks:
        for source, targets in rule.items():
            assert {source, *targets} <= aliases
    router = config.router_settings.model_dump()
    assert all(math.isfinite(v) for v in router.values() if isinstance(v, float))
    for entry in config.model_list:
        assert entry.litellm_params.model
        assert math.isfinite(entry.litellm_params.weight)


@settings(FUZZ, max_examples=500)
@given(content=yaml_bytes(CONFIG_BASE))
def test_any_config_file_loads_or_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    outcome = config_outcome(write(tmp_path / "gateway.yaml", content))
    record(outcome)
    if isinstance(outcome, ConfigError):
        assert_clear(outcome, tmp_path)
    else:
        check_config(outcome)


@settings(FUZZ, max_examples=500)
@given(content=yaml_bytes(SUITE_BASE))
def test_any_suite_file_loads_or_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    outcome = suite_outcome(write(tmp_path / "suite.yaml", content))
    record(outcome)
    if isinstance(outcome, ConfigError):
        assert_clear(outcome, tmp_path)
    else:
        ids = [case.id for case in outcome.cases]
        assert outcome.cases
        assert len(set(ids)) == len(ids)
        assert all(case.asserts for case in outcome.cases)
        str(outcome.target)


def jsonl_rows() -> st.SearchStrategy[str]:
    rows = st.one_of(
        st.builds(lambda case: yaml.safe_dump(case, default_flow_style=True, width=10**9),
                  mutated(SUITE_BASE["cases"][0])),
        st.builds(lambda v: json.dumps(v, allow_nan=True), values),
        st.text(max_size=40),
        st.sampled_from(['{"vars": {"n": ' + "9" * 4400 + "}}", "[" * 3000, "NaN", "{}", '""']),
    )  # fmt: skip
    return st.lists(rows, max_size=6).map(lambda lines: "\n".join(x.strip("\n") for x in lines))


def csv_text() -> st.SearchStrategy[str]:
    cell = st.one_of(
        st.text(max_size=10),
        st.sampled_from(["contains: Paris", "not-regex: [", "regex: (", '"', '""', "a,b", "\x00"]),
    )
    header = st.lists(st.sampled_from(["q", "__id", "__expected", "", "q"]) | st.text(max_size=5),
                      min_size=0, max_size=4)  # fmt: skip
    return st.builds(
        lambda head, rows, sep: "\n".join([",".join(head), *(",".join(r) for r in rows)]) + sep,
        header,
        st.lists(st.lists(cell, max_size=5), max_size=5),
        st.sampled_from(["", "\n", "\r\n"]),
    )


@settings(FUZZ, max_examples=300)
@given(
    dataset=st.one_of(
        st.tuples(st.just("data.jsonl"), jsonl_rows()),
        st.tuples(st.just("data.csv"), csv_text()),
    ),
    damage=st.booleans(),
    data=st.data(),
)
def test_any_dataset_loads_or_is_a_config_error(
    tmp_path: Path, dataset: tuple[str, str], damage: bool, data: st.DataObject
) -> None:
    name, text = dataset
    content = data.draw(damaged(text)) if damage else text.encode("utf-8", "surrogatepass")
    write(tmp_path / name, content)
    suite = write(tmp_path / "suite.yaml", f"target: model:gpt\ndataset: {name}\n")
    outcome = suite_outcome(suite)
    record(outcome)
    if isinstance(outcome, ConfigError):
        assert_clear(outcome, tmp_path)
    else:
        assert outcome.cases


def prompt_texts() -> st.SearchStrategy[tuple[bytes, str]]:
    body = st.one_of(
        st.just(BODY),
        st.lists(st.sampled_from(TAG_TOKENS), max_size=30).map("".join),
        st.builds(
            lambda at, token: BODY[:at] + token + BODY[at:],
            st.integers(0, len(BODY)),
            st.sampled_from(TAG_TOKENS),
        ),
        st.text(max_size=60),
    )
    front = st.one_of(
        st.builds(dump, mutated(FRONT_BASE), st.sampled_from([None, True, False])),
        st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=6), max_size=20).map("".join),
        st.just("metadata:\n" + bomb(9, 9, "  ")),
    )
    whole = st.builds(lambda f, b: f"---\n{f}---\n{b}", front, body).flatmap(damaged)
    names = st.sampled_from(["greet.prompt"] * 6 + ["greet.formal.prompt", "_p.prompt", "G.prompt"])
    return st.tuples(st.one_of(whole, whole, whole, st.binary(max_size=200)), names)


@settings(FUZZ, max_examples=500)
@given(case=prompt_texts())
def test_any_prompt_file_parses_or_is_problem_lines(
    tmp_path: Path, case: tuple[bytes, str]
) -> None:
    content, name = case
    path = write(tmp_path / name, content)
    outcome = prompt_outcome(path)
    record(outcome)
    if isinstance(outcome, PromptError):
        assert_problem_lines(outcome, path)
    else:
        # Front matter alone is a prompt too (Dotprompt renders it to no messages).
        assert isinstance(outcome.template, str)
        assert outcome.version
        if outcome.input_schema is not None:  # an object of variables, or one value
            assert isinstance(outcome.input_schema, dict)


@settings(FUZZ, max_examples=300)
@given(
    text=st.text(max_size=300) | st.lists(st.sampled_from(TAG_TOKENS + YAML_TOKENS)).map("".join)
)
def test_any_prompt_text_parses_or_is_problem_lines(tmp_path: Path, text: str) -> None:
    # Stored prompt versions are parsed from text, not from a file.
    path = tmp_path / "greet.prompt"
    outcome = prompt_outcome(path, text)
    record(outcome)
    if isinstance(outcome, PromptError):
        assert_problem_lines(outcome, path)

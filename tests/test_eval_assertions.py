"""Assertions: every type passing and failing, `not-`, strict specs, judges and embeddings."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.evals.assertions import KNOWN_TYPES, AssertionSpec, Embed, EvalContext, evaluate
from gateway.evals.graded import judge_prompt
from gateway.evals.text_metrics import levenshtein, rouge_n
from gateway.providers.local import SentenceEmbedder

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def call(name: str, arguments: Any) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": raw}}


async def check(kind: str, value: Any = None, output: str = "", **fields: Any) -> Any:
    spec_fields = {k: fields.pop(k) for k in ("threshold", "n", "weight") if k in fields}
    fields.setdefault("tools", [WEATHER_TOOL])
    spec = AssertionSpec(type=kind, value=value, **spec_fields)
    return await evaluate(spec, EvalContext(output=output, vars=fields.pop("vars", {}), **fields))


# (type, value, extra spec/context fields, output that passes, output that fails)
DETERMINISTIC = [
    ("equals", "Paris", {}, "Paris", "Paris\n"),
    ("equals", {"a": [1, True]}, {}, '{"a": [1.0, true]}', '{"a": [1, 1]}'),
    ("contains", "billing", {}, "a billing question", "a Billing question"),
    ("icontains", "billing", {}, "a BILLING question", "an invoice question"),
    ("icontains-any", ["refund", "credit"], {}, "a CREDIT note", "we said no"),
    ("icontains-all", ["refund", "days"], {}, "Refund in 5 DAYS", "refund soon"),
    ("contains-any", ["refund", "credit"], {}, "we issued a credit", "we said no"),
    ("contains-all", ["refund", "days"], {}, "refund in 5 days", "refund soon"),
    ("starts-with", "Yes", {}, "Yes, we can.", "\nYes, we can."),
    ("word-count", {"min": 2, "max": 3}, {}, "two words", "just one more word"),
    ("finish-reason", "stop", {"finish_reason": "STOP"}, "", ""),
    ("contains-json", None, {}, 'Here: {"ok": true}.', "{'ok': True}"),
    ("is-xml", {"requiredElements": ["a.b"]}, {}, "<a><b/></a>", "<a><c/></a>"),
    ("bleu", "the cat sat on the mat", {}, "the cat sat on the mat", "a dog ran"),
    ("regex", r"\b\d{3}-\d{4}\b", {}, "call 555-1234 now", "call 5551234 now"),
    ("is-json", None, {}, ' {"ok": true} ', "{'ok': True}"),
    ("is-json", {"type": "object", "required": ["ok"]}, {}, '{"ok": 1}', '{"fine": 1}'),
    ("json-schema", {"type": "array", "items": {"type": "integer"}}, {}, "[1, 2]", '[1, "2"]'),
    ("levenshtein", "colour", {}, "color", "flavour of the month"),
    ("levenshtein", "kitten", {"threshold": 1}, "kitten!", "sitting"),
    ("rouge-n", "the cat sat on the mat", {}, "The cat sat on a mat.", "A dog ran in the park."),
    ("rouge-n", "the cat sat on the mat", {"n": 2, "threshold": 0.5}, "the cat sat", "cat the"),
    ("cost", 0.01, {"cost_usd": 0.004}, "", ""),
    ("latency", 500, {"latency_ms": 120.0}, "", ""),
    ("python", "tests.eval_checks:mentions_city", {"vars": {"city": "Oslo"}}, "oslo!", "Bergen"),
]


@pytest.mark.parametrize(("kind", "value", "extra", "good", "bad"), DETERMINISTIC)
async def test_each_type_passes_and_fails(
    kind: str, value: Any, extra: dict[str, Any], good: str, bad: str
) -> None:
    passing = await check(kind, value, good, **extra)
    assert passing.passed, passing.reason
    assert passing.score > 0.5
    assert not passing.error
    if kind in ("cost", "latency"):
        # The same limit on a slower or dearer answer.
        extra = {key: val * 1000 for key, val in extra.items()}
    if kind == "finish-reason":
        extra = {"finish_reason": "length"}
    failing = await check(kind, value, bad, **extra)
    assert not failing.passed, failing.reason
    assert not failing.error
    assert failing.score < passing.score
    assert failing.reason.startswith("expected output to ")


def test_the_table_covers_every_type_but_the_model_graded_ones() -> None:
    covered = {row[0] for row in DETERMINISTIC} | {
        "similar",
        "llm-rubric",
        "is-valid-tool-call",
        "assert-set",  # a group, judged by scoring.judge_case (tests/test_promptfoo_parity.py)
    }
    assert covered == set(KNOWN_TYPES)


async def test_reasons_say_what_was_expected_and_found() -> None:
    outcome = await check("contains", "billing", "an invoice question")
    assert outcome.reason == "expected output to contain 'billing'"
    outcome = await check("contains-all", ["refund", "days"], "refund soon")
    assert outcome.reason.endswith('all of ["refund", "days"] (missing ["days"])')
    outcome = await check("levenshtein", "kitten", "sitting", threshold=1)
    assert "distance 3" in outcome.reason
    assert outcome.score == 0.0  # pass or fail, as promptfoo scores it


async def test_json_schema_failure_names_the_path() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
    }
    outcome = await check("json-schema", schema, '{"items": [1, "two"]}')
    assert not outcome.passed
    assert "$.items[1]" in outcome.reason
    assert "'two' is not of type 'integer'" in outcome.reason
    outcome = await check("json-schema", schema, "Sure! Here is the JSON")
    assert "not JSON" in outcome.reason


async def test_not_inverts_pass_score_and_reason() -> None:
    outcome = await check("not-contains", "sorry", "I can help with that")
    assert outcome.passed
    assert outcome.score == 1.0
    assert outcome.reason == "expected output NOT to contain 'sorry'"
    outcome = await check("not-contains", "sorry", "sorry, I cannot")
    assert not outcome.passed
    assert outcome.score == 0.0
    outcome = await check("not-levenshtein", "kitten", "sitting", threshold=1)
    assert outcome.passed
    assert outcome.score == 1.0
    outcome = await check("not-is-json", None, "plain prose")
    assert outcome.passed


async def test_not_never_turns_an_error_into_a_pass() -> None:
    outcome = await check("not-cost", 0.01, "answer")
    assert outcome.error
    assert not outcome.passed
    assert outcome.reason == "cost: the answer has no cost to check"


async def test_latency_of_a_cached_answer_is_skipped_even_negated() -> None:
    for kind in ("latency", "not-latency"):
        outcome = await check(kind, 100, "answer", latency_ms=5000.0, cached=True)
        assert outcome.passed
        assert outcome.skipped
        assert not outcome.error
    missing = await check("latency", 100, "answer")
    assert missing.error
    assert not missing.passed


async def test_cost_and_latency_accept_promptfoo_threshold_as_the_maximum() -> None:
    spec = AssertionSpec(type="latency", threshold=250)
    assert spec.value == 250
    outcome = await evaluate(spec, EvalContext(output="", vars={}, latency_ms=300.0))
    assert not outcome.passed
    assert "took 300 ms" in outcome.reason


# --- spec validation -------------------------------------------------------------------------


def validation_error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        AssertionSpec(**fields)
    return str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "contans", "value": "x"}, "did you mean 'contains'?"),
        ({"type": "not-icontain", "value": "x"}, "did you mean 'not-icontains'?"),
        ({"type": "javascript", "value": "x"}, "unknown assertion type 'javascript'"),
        ({"type": "regex", "value": "(unclosed"}, "regex assertion: /(unclosed/: not a valid"),
        ({"type": "regex", "value": "(?i)yes"}, "is not JavaScript"),
        ({"type": "regex", "value": "end\\Z"}, "\\Z is the letter Z in JavaScript"),
        ({"type": "json-schema", "value": {"type": "objekt"}}, "not a valid JSON Schema"),
        ({"type": "json-schema"}, "json-schema assertion: needs a value"),
        ({"type": "is-json", "value": "an object"}, "must be a JSON Schema"),
        ({"type": "contains"}, "contains assertion: value must be a non-empty string"),
        ({"type": "equals"}, "equals assertion: needs a value"),
        ({"type": "contains-any", "value": []}, "non-empty list of strings"),
        ({"type": "contains-all", "value": {"a": 1}}, "non-empty list of strings"),
        ({"type": "cost", "value": -1}, "cost assertion: value must be a number >= 0"),
        ({"type": "latency"}, "latency assertion: value must be a number >= 0"),
        ({"type": "python", "value": "output.startswith("}, "not valid Python"),
        ({"type": "python", "value": "file://checks.js"}, "file://path/to/code.py"),
        ({"type": "python", "value": ""}, "python assertion: value must be Python code"),
        ({"type": "similar", "value": [1]}, "similar assertion: value must be a non-empty"),
        ({"type": "word-count", "value": {"min": 5, "max": 2}}, "min must not be above max"),
        ({"type": "is-xml", "value": ["a.b"]}, "{requiredElements: [root.child, ...]}"),
        ({"type": "is-json", "value": {"format": "colour"}}, "format 'colour', which the"),
        ({"type": "not-assert-set", "assert": []}, "unknown assertion type 'not-assert-set'"),
        ({"type": "llm-rubric"}, "llm-rubric assertion: value must be a non-empty string"),
        ({"type": "rouge-n", "value": "one", "n": 2}, "needs at least 2 word(s)"),
        ({"type": "similar", "value": "a", "threshold": 1.5}, "between 0 and 1"),
        ({"type": "contains", "value": "a", "threshold": 0.5}, "`threshold` does not apply"),
        ({"type": "contains", "value": "a", "n": 2}, "`n` applies only to rouge-n"),
        ({"type": "is-valid-tool-call", "value": "get_weather"}, "takes no value"),
        ({"type": "contains", "value": "a", "weight": -1}, "greater than or equal to 0"),
        ({"type": "contains", "value": "a", "expected": "a"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused_clearly(fields: dict[str, Any], message: str) -> None:
    assert message in validation_error(**fields)


def test_specs_normalize_aliases_and_numbers() -> None:
    alias = AssertionSpec(type="not-is-valid-openai-tools-call")
    assert alias.type == "not-is-valid-tool-call"
    assert alias.negated
    assert alias.base_type == "is-valid-tool-call"
    assert AssertionSpec(type="contains", value=42).value == "42"
    assert AssertionSpec(type="contains-any", value=[1, "two"]).value == ["1", "two"]
    assert AssertionSpec(type="equals", value=42).value == 42  # compared as JSON


def test_the_json_schema_of_a_spec_lists_the_types_for_editors() -> None:
    schema = AssertionSpec.model_json_schema()["$defs"]["AssertionSpec"]
    types = set(schema["properties"]["type"]["enum"])
    assert {"contains", "not-contains", "llm-rubric", "assert-set", "icontains-any"} <= types
    assert "not-assert-set" not in types


# --- is-valid-tool-call ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_calls", "tools", "output", "problem"),
    [
        ([call("get_weather", {"city": "Oslo"})], [WEATHER_TOOL], "", None),
        ([call("anything", {})], [WEATHER_TOOL], "", "anything: not among the offered tools"),
        ([call("get_weather", {"city": "Oslo", "days": 3})], [WEATHER_TOOL], "", None),
        (None, [WEATHER_TOOL], '{"name": "get_weather", "arguments": {"city": "Oslo"}}', None),
        (
            None,
            [WEATHER_TOOL],
            json.dumps([{"name": "get_weather", "arguments": '{"city": "O"}'}]),
            None,
        ),
        (None, [WEATHER_TOOL], "It is sunny in Oslo.", "no tool calls"),
        ([call("get_weather", "{city: Oslo}")], [WEATHER_TOOL], "", "arguments are not a JSON"),
        ([{"type": "function", "function": {"arguments": "{}"}}], [WEATHER_TOOL], "", "no func"),
        ([call("get_forecast", {"city": "Oslo"})], [WEATHER_TOOL], "", "not among the offered"),
        ([call("get_weather", {"days": 3})], [WEATHER_TOOL], "", "'city' is a required property"),
        ([call("get_weather", {"city": "Oslo", "days": "3"})], [WEATHER_TOOL], "", "$.days"),
    ],
)
async def test_tool_calls(
    tool_calls: list[dict[str, Any]] | None,
    tools: list[dict[str, Any]] | None,
    output: str,
    problem: str | None,
) -> None:
    outcome = await check("is-valid-tool-call", None, output, tool_calls=tool_calls, tools=tools)
    assert not outcome.error
    assert outcome.passed is (problem is None), outcome.reason
    if problem:
        assert problem in outcome.reason


async def test_tool_calls_without_offered_tools_cannot_be_judged() -> None:
    # promptfoo checks calls against the provider's tools; a suite offering none is an error.
    for kind in ("is-valid-tool-call", "not-is-valid-openai-tools-call"):
        outcome = await check(kind, None, "", tool_calls=[call("get_weather", {})], tools=None)
        assert outcome.error
        assert not outcome.passed
        assert "offers no tools" in outcome.reason


async def test_a_tool_with_a_broken_schema_is_an_error_not_a_failure() -> None:
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}
    outcome = await check(
        "is-valid-tool-call", None, "", tool_calls=[call("f", {})], tools=[broken]
    )
    assert outcome.error
    assert "tool 'f' has invalid parameters" in outcome.reason


# --- llm-rubric ------------------------------------------------------------------------------


class StubJudge:
    """A judge model that always gives one reply, and keeps the prompts it was sent."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    async def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.reply


RUBRIC = "The answer apologises and offers a refund."


@pytest.mark.parametrize(
    ("reply", "passed", "score"),
    [
        ('{"pass": true, "score": 0.9, "reason": "apologises, offers refund"}', True, 0.9),
        ('{"pass": false, "score": 0.2, "reason": "no refund offered"}', False, 0.2),
        # As promptfoo: without a threshold the judge's pass decides, whatever its score.
        ('{"pass": true, "score": 0.3, "reason": "barely"}', True, 0.3),
        ('{"pass": "yes", "score": 0.9}', True, 0.9),
        ('{"score": 0.3}', False, 0.3),  # no pass: the score against 0.5
        ('Verdict:\n```json\n{"pass": true, "score": 1, "reason": "ok"}\n```\nDone.', True, 1.0),
        ('{"reason": "no score given", "pass": "true"}', True, 1.0),
        ('{"score": 0.7}', True, 0.7),
    ],
)
async def test_llm_rubric_reads_the_judge(reply: str, passed: bool, score: float) -> None:
    judge = StubJudge(reply)
    outcome = await check("llm-rubric", RUBRIC, "Sorry! Refund issued.", judge=judge)
    assert not outcome.error
    assert (outcome.passed, outcome.score) == (passed, pytest.approx(score))
    assert outcome.reason.startswith("expected output to satisfy the rubric")
    assert RUBRIC in judge.prompts[0]
    assert "Sorry! Refund issued." in judge.prompts[0]


async def test_llm_rubric_threshold_and_negation() -> None:
    judge = StubJudge('{"pass": true, "score": 0.6, "reason": "partly"}')
    strict = await check("llm-rubric", RUBRIC, "x", judge=judge, threshold=0.8)
    assert not strict.passed
    assert "judge: pass, score 0.60: partly" in strict.reason
    negated = await check("not-llm-rubric", RUBRIC, "x", judge=judge)
    assert not negated.passed
    assert negated.score == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I think it passes.", "the judge's reply has no JSON object"),
        ('{"pass": true, "score": 8}', "outside 0..1"),
        ('{"pass": "maybe"}', "pass is not true or false"),
        ('{"reason": "forgot the verdict"}', "neither pass nor score"),
    ],
)
async def test_an_unusable_judge_reply_is_an_error(reply: str, reason: str) -> None:
    for kind in ("llm-rubric", "not-llm-rubric"):
        outcome = await check(kind, RUBRIC, "x", judge=StubJudge(reply))
        assert outcome.error
        assert not outcome.passed
        assert reason in outcome.reason


async def test_a_failing_or_missing_judge_is_an_error() -> None:
    async def broken(prompt: str) -> str:
        raise TimeoutError("judge timed out")

    outcome = await check("llm-rubric", RUBRIC, "x", judge=broken)
    assert outcome.error
    assert "the judge failed: judge timed out" in outcome.reason
    outcome = await check("llm-rubric", RUBRIC, "x")
    assert outcome.error
    assert "no judge model is configured" in outcome.reason


def test_the_judge_prompt_asks_for_strict_json() -> None:
    prompt = judge_prompt("Is polite.", "Thanks!")
    assert '{"pass": true or false' in prompt
    assert "<output>\nThanks!\n</output>" in prompt


# --- similar (the real bundled embedding model) ----------------------------------------------


@pytest.fixture(scope="module")
def embed() -> Embed:
    embedder = SentenceEmbedder()

    async def embed_texts(texts: list[str]) -> list[list[float]]:
        vectors, _ = await asyncio.to_thread(embedder.embed, texts)
        return [list(map(float, vector)) for vector in vectors]

    return embed_texts


REFERENCE = "You can reset your password from the login page by choosing 'Forgot password'."


@pytest.mark.slow
async def test_similar_passes_a_paraphrase_and_fails_an_unrelated_answer(embed: Embed) -> None:
    paraphrase = "To reset your password, click 'Forgot password' on the sign-in page."
    close = await check("similar", REFERENCE, paraphrase, embed=embed, threshold=0.7)
    assert close.passed, close.reason
    assert close.score >= 0.7
    far = await check(
        "similar", REFERENCE, "Penguins mostly live south of the equator.", embed=embed
    )
    assert not far.passed
    assert far.score < 0.3
    assert "cosine" in far.reason
    negated = await check("not-similar", REFERENCE, "Penguins live in the south.", embed=embed)
    assert negated.passed


async def test_similar_without_a_working_embedder_is_an_error() -> None:
    async def broken(texts: list[str]) -> list[list[float]]:
        raise ConnectionError("embedding model unavailable")

    outcome = await check("similar", REFERENCE, "x", embed=broken)
    assert outcome.error
    assert "embedding failed: embedding model unavailable" in outcome.reason
    outcome = await check("not-similar", REFERENCE, "x")
    assert outcome.error
    assert not outcome.passed


# --- python ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "output", "fields", "passed", "score"),
    [
        ("tests.eval_checks:mentions_city", "Bergen", {"vars": {"city": "Oslo"}}, False, 0.0),
        ("output.lower().startswith('oslo')", "Oslo!", {}, True, 1.0),
        ("len(output) > 3 and context['vars']['n'] == 2", "abcd", {"vars": {"n": 2}}, True, 1.0),
        ("x = output.split()\nreturn len(x) / 4", "a b", {}, True, 0.5),
        ("tests.eval_checks:short_enough", "brief", {}, True, 1.0),
        ("tests.eval_checks:short_enough", "far too long for the limit", {}, False, 0.0),
        (
            "tests.eval_checks:word_share",
            "red and blue",
            {"vars": {"words": "red blue"}},
            True,
            1.0,
        ),
        (  # a number passes when above 0 without a threshold (promptfoo)
            "tests.eval_checks:word_share",
            "red",
            {"vars": {"words": "red blue green"}},
            True,
            1 / 3,
        ),
        (
            "tests.eval_checks:word_share",
            "red",
            {"vars": {"words": "red blue green"}, "threshold": 0.5},
            False,
            1 / 3,
        ),
        ("tests.eval_checks:word_share", "pink", {"vars": {"words": "red blue"}}, False, 0.0),
        (
            "tests.eval_checks:word_share",
            "red",
            {"vars": {"words": "red blue"}, "threshold": 0.5},
            True,
            0.5,
        ),
        ("tests.eval_checks:graded", "Please wait.", {}, True, 0.9),
        ("tests.eval_checks:graded", "Wait.", {}, False, 0.1),
        ("tests.eval_checks:score_only", "x", {}, True, 0.3),
        ("tests.eval_checks:score_only", "x", {"threshold": 0.5}, False, 0.3),
        ("tests.eval_checks:graded", "Please wait.", {"threshold": 0.95}, False, 0.9),
    ],
)
async def test_python_checks(
    target: str, output: str, fields: dict[str, Any], passed: bool, score: float
) -> None:
    outcome = await check("python", target, output, **fields)
    assert not outcome.error, outcome.reason
    assert (outcome.passed, outcome.score) == (passed, pytest.approx(score))


async def test_python_checks_see_the_context_and_their_reason_is_reported() -> None:
    outcome = await check(
        "python", "tests.eval_checks:echo_context", "x", latency_ms=12.0, cost_usd=0.5
    )
    assert outcome.reason == "expected output to pass tests.eval_checks:echo_context " + (
        "({'latency_ms': 12.0, 'cost_usd': 0.5})"
    )
    polite = await check("not-python", "tests.eval_checks:graded", "Wait.")
    assert polite.passed
    assert polite.score == pytest.approx(0.1)  # promptfoo keeps the check's own score


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("tests.eval_checks:explodes", "raised RuntimeError: lookup table missing"),
        ("tests.eval_checks:out_of_range", "returned score 7, outside 0..1"),
        ("tests.eval_checks:wrong_type", "returned str; expected a bool"),
        ("tests.eval_checks:missing", "'tests.eval_checks' has no function 'missing'"),
        ("tests.no_such_module:check", "cannot import 'tests.no_such_module'"),
    ],
)
async def test_a_broken_python_check_is_an_error(target: str, reason: str) -> None:
    outcome = await check("python", target, "x")
    assert outcome.error
    assert not outcome.passed
    assert reason in outcome.reason


# --- the metrics themselves ------------------------------------------------------------------


def naive_levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def test_levenshtein_matches_the_textbook_algorithm() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("abcé") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abcé") for _ in range(rng.randint(0, 12)))
        assert levenshtein(a, b) == naive_levenshtein(a, b), (a, b)
    assert levenshtein("kitten", "sitting") == 3


async def test_levenshtein_is_fast_on_long_answers() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 60  # 2,700 x 2,700 cells
    assert levenshtein(text, text[::-1]) > 0
    outcome = await check("levenshtein", text, text.replace("fox", "cat"), threshold=200)
    assert outcome.passed
    assert "distance 180" in outcome.reason


def test_rouge_n_is_the_f_measure_of_clipped_ngram_overlap() -> None:
    # Unigrams: 5 of 6 reference words and 5 of 6 candidate words overlap.
    assert rouge_n("The cat sat on a mat.", "the cat sat on the mat") == pytest.approx(5 / 6)
    # Bigrams: "the cat", "cat sat" of 5 reference and 2 candidate bigrams.
    assert rouge_n("the cat sat", "the cat sat on the mat", 2) == pytest.approx(4 / 7)
    assert rouge_n("", "the cat") == 0.0

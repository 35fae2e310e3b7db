"""Text metrics for assertions: edit distance, ROUGE-N, BLEU, word counts and value lists."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import regex

_WORD = re.compile(r"\w+")
_GRAPHEME = regex.compile(r"\X")


def graphemes(text: str) -> list[str]:
    """User-perceived characters: "é" written as e + accent is one, so is a flag or 👍🏽."""
    if text.isascii() and "\r\n" not in text:
        return list(text)
    clusters: list[str] = _GRAPHEME.findall(text)  # CRLF is one character too
    return clusters


def grapheme_levenshtein(a: str, b: str) -> int:
    """Edit distance counted in user-perceived characters (one edit fixes a wrong emoji)."""
    if a.isascii() and b.isascii() and "\r\n" not in a + b:
        return levenshtein(a, b)
    ids: dict[str, str] = {}

    def encode(text: str) -> str:
        # Each distinct cluster becomes one code point (never a surrogate), so the numpy
        # distance below applies unchanged.
        for cluster in graphemes(text):
            if cluster not in ids:
                n = len(ids)
                ids[cluster] = chr(n if n < 0xD800 else n + 0x800)
        return "".join(ids[cluster] for cluster in graphemes(text))

    return levenshtein(encode(a), encode(b))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between code point sequences, one
    numpy pass per character.

    Model answers run to thousands of characters, so the classic quadratic loop in pure Python
    would take seconds; here each DP row is a handful of vector operations.
    """
    # A shared prefix or suffix never changes the distance and near-matches are the usual case.
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    a, b = a[prefix:], b[prefix:]
    suffix = 0
    while suffix < min(len(a), len(b)) and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    if suffix:
        a, b = a[:-suffix], b[:-suffix]
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    offsets = np.arange(len(b) + 1, dtype=np.int64)
    previous = offsets
    for row, char in enumerate(a, 1):
        current = np.empty_like(previous)
        current[0] = row
        substitution = previous[:-1] + (codes != ord(char))
        current[1:] = np.minimum(previous[1:] + 1, substitution)
        # Insertions chain along the row: current[j] = min over k <= j of current[k] + (j - k),
        # which is a running minimum of current - j.
        previous = np.minimum.accumulate(current - offsets) + offsets
    return int(previous[-1])


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(candidate: str, reference: str, n: int = 1) -> float:
    """ROUGE-N F1: clipped n-gram overlap of lowercased words, as precision and recall."""
    found = ngrams(word_tokens(candidate), n)
    wanted = ngrams(word_tokens(reference), n)
    overlap = sum((found & wanted).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(found.values())
    recall = overlap / sum(wanted.values())
    return 2 * precision * recall / (precision + recall)


def whitespace_words(text: str) -> list[str]:
    """Words as promptfoo's word-count and BLEU split them: runs of non-whitespace."""
    return text.split()


def bleu(candidate: str, references: Sequence[str]) -> float:
    """BLEU-4 as promptfoo computes it: lowercased whitespace words, n-gram precisions clipped
    by the best reference, zero precisions smoothed to 1e-7, brevity penalty against the
    reference closest in length. Blank references are ignored; an empty candidate scores 0."""
    words = candidate.lower().split()
    refs = [ref.lower().split() for ref in references if ref.strip()]
    if not words or not refs:
        return 0.0
    # The first reference closest in length, as promptfoo's reduce picks it.
    closest = min((len(r) for r in refs), key=lambda length: abs(length - len(words)))
    log_sum = 0.0
    for n in range(1, 5):
        found = ngrams(words, n)
        total = sum(found.values())
        best = max(sum((found & ngrams(ref, n)).values()) for ref in refs)
        precision = best / total if total else 0.0
        log_sum += 0.25 * math.log(precision or 1e-7)
    penalty = 1.0 if len(words) > closest else math.exp(1 - closest / len(words))
    return penalty * math.exp(log_sum)


def comma_separated(text: str) -> list[str]:
    """ "a, b, c" as a list, as promptfoo reads a list written as text: items trimmed, and an
    item in double quotes may hold commas."""
    rows = list(csv.reader([text], skipinitialspace=True))
    return [item.strip() for item in (rows[0] if rows else []) if item.strip()]

"""Text similarity metrics for assertions: edit distance and ROUGE-N."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

_WORD = re.compile(r"\w+")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), one numpy pass per character.

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


def ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
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

"""Counts in messages people read: "1 case", "3 cases", never "1 cases" or "case(s)"."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`count` and the noun that agrees with it; `nouns` when adding an s is wrong."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"

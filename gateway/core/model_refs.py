"""Registry names, labels and refs: `NAME`, `NAME@3`, `NAME@production`, `NAME@latest`.

Only the grammar, beside both its users: the registry stores and resolves refs, eval suites
target them, and the registry gates promotion on eval runs, so the grammar living in either
package made the two import each other.

Versions are numbers and labels start with a letter, so a ref is never ambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.core.errors import BadRequest

# Whole strings only (fullmatch): with re.match, `$` also matches before a final newline.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
LABEL = re.compile(r"[a-z][a-z0-9-]{0,63}")
VERSION = re.compile(r"[1-9][0-9]{0,8}")
LATEST = "latest"  # not a stored label: always the newest version
# How eval runs name the registry version they tested (the suite target syntax).
EVAL_PREFIX = "registry:"


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    ref: str = LATEST  # a version number, a label, or "latest"

    @property
    def version(self) -> int | None:
        return int(self.ref) if VERSION.fullmatch(self.ref) else None

    def __str__(self) -> str:
        return f"{self.name}@{self.ref}"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadRequest(
            f"model name {name!r} must be letters, digits, '.', '_' or '-' (at most 200), "
            f"starting with a letter or digit",
            param="name",
        )
    return name


def check_label(label: str) -> str:
    if label == LATEST:
        raise BadRequest(
            "'latest' always means the newest version; choose another label", param="label"
        )
    if not LABEL.fullmatch(label):
        raise BadRequest(
            f"label {label!r} must match [a-z][a-z0-9-]* (e.g. production, staging, canary)",
            param="label",
        )
    return label


def check_ref(ref: str) -> str:
    if ref != LATEST and not VERSION.fullmatch(ref) and not LABEL.fullmatch(ref):
        raise BadRequest(
            f"ref {ref!r} must be a version number (3), a label (production) or 'latest'",
            param="ref",
        )
    return ref


def model_ref(name: str, ref: str = LATEST) -> ModelRef:
    return ModelRef(check_name(name), check_ref(ref))


def parse_ref(text: str) -> ModelRef:
    """`NAME[@REF]`, also with the eval target prefix `registry:`."""
    name, _, ref = text.strip().removeprefix(EVAL_PREFIX).partition("@")
    return model_ref(name, ref or LATEST)


def eval_version(name: str, version: int) -> str:
    """What an eval run of this version records as the version it tested."""
    return f"{EVAL_PREFIX}{name}@{version}"

"""Prompt versions, labels and their history in the database.

Versions are immutable and keyed by content hash. Labels move, and every move is recorded
with who, when, from, to and why. `latest` is managed by sync: it is the version of the file
as it is on disk, also when that content was registered before (a revert moves it back), and
it stays where it was when the file is removed or broken. The first version of a prompt also
becomes `production`, so a new prompt is callable without a ceremony.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.exc import IntegrityError

from gateway.core.errors import BadRequest, NotFound
from gateway.prompts.files import (
    SUFFIX,
    PromptError,
    PromptFile,
    parse_prompt,
    prompt_name,
    scan,
)
from gateway.prompts.models import (
    PromptLabelMove,
    PromptLabelMoved,
    PromptVersion,
    PromptVersionText,
)
from gateway.prompts.served import ServedModels
from gateway.store.rows import put_row
from gateway.store.tables import prompt_label_history, prompt_labels, prompt_versions

LATEST = "latest"
PRODUCTION = "production"
# Weights are relative shares; a bound keeps them finite (an infinite weight would take all
# the traffic on SQLite and be stored as null on PostgreSQL).
MAX_WEIGHT = 1_000_000
REVERTED = "the file on disk is this version again"


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class SyncReport:
    registered: list[tuple[str, str]] = field(default_factory=list)  # (name, version)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    errors: list[PromptError] = field(default_factory=list)
    # `latest` moved back to a version registered before: (name, version, from version)
    latest_moved: list[tuple[str, str, str | None]] = field(default_factory=list)
    # Prompts registered before whose file is gone: (name, the version `latest` stays at)
    removed: list[tuple[str, str | None]] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [line for error in self.errors for line in error.problems]


@dataclass(frozen=True, slots=True)
class GitInfo:
    commit: str | None = None
    author: str | None = None
    message: str | None = None


def git_info(path: Path) -> GitInfo:
    """The last commit that touched the file, when the file is committed as it is now."""
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if dirty.returncode != 0 or dirty.stdout.strip():
            return GitInfo()  # not in a repository, or edited since the last commit
        log = subprocess.run(
            ["git", "log", "-1", "--format=%H%x1f%an%x1f%s", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return GitInfo()
    parts = log.stdout.strip().split("\x1f")
    if log.returncode != 0 or len(parts) != 3:
        return GitInfo()
    return GitInfo(*parts)


def normalize_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """{"version": v} or {"weights": {v: w}} with positive weights; one version collapses."""
    if "version" in target and "weights" not in target:
        version = target["version"]
        if not isinstance(version, str) or not version:
            raise BadRequest("a label needs 'version' (a version id) or 'weights'")
        return {"version": version}
    weights = target.get("weights")
    if not isinstance(weights, Mapping) or not weights:
        raise BadRequest("a label needs 'version' or non-empty 'weights' {version: weight}")
    clean = {}
    for version, weight in weights.items():
        if (
            not isinstance(weight, int | float)
            or isinstance(weight, bool)
            or not 0 <= weight <= MAX_WEIGHT  # also false for NaN
        ):
            raise BadRequest(
                f"weight of version {version} must be a number from 0 to {MAX_WEIGHT}, "
                f"not {weight!r}",
                param=f"weights.{version}",
            )
        if weight > 0:
            clean[str(version)] = float(weight)
    if not clean:
        raise BadRequest("at least one weight must be above 0")
    if len(clean) == 1:
        return {"version": next(iter(clean))}
    return {"weights": clean}


def target_versions(target: Mapping[str, Any]) -> list[str]:
    if "version" in target:
        return [str(target["version"])]
    return list(target.get("weights", {}))


class PromptStore:
    """Synchronous database access (call from a worker thread on the server)."""

    def __init__(self, engine: Engine, served: ServedModels | None = None) -> None:
        self.engine = engine
        # The models prompts may name; None: not checked (commands that only read).
        self.served = served

    # --- versions -------------------------------------------------------------------------
    def sync(self, directory: Path, actor: str = "sync") -> SyncReport:
        files, errors = scan(directory)
        on_disk = {p.name for p in files} | {prompt_name(e.path) for e in errors}
        if self.served is not None:
            files, unserved = self.served.split(files)
            errors = sorted([*errors, *unserved], key=lambda e: str(e.path))
        report = SyncReport(errors=errors)
        for prompt in files:
            try:
                new = self.register(prompt, git_info(prompt.path), actor, root=directory)
                moved_from = None if new else self.follow_latest(prompt, actor)
            except IntegrityError:
                # Another replica registered the same version or moved `latest` at the same
                # moment, to the same place.
                new, moved_from = False, None
            if new:
                report.registered.append((prompt.name, prompt.version))
            else:
                report.unchanged.append((prompt.name, prompt.version))
            if moved_from is not None:
                report.latest_moved.append((prompt.name, prompt.version, moved_from or None))
        if directory.is_dir():  # a missing folder says nothing about which files were removed
            for name in self.names():
                if name not in on_disk:
                    latest = self.labels(name).get(LATEST)
                    report.removed.append((name, target_versions(latest)[0] if latest else None))
        return report

    def follow_latest(self, prompt: PromptFile, actor: str) -> str | None:
        """Moves `latest` to this registered version when it points elsewhere (a revert).
        Returns the version it pointed at ("" when it had none), or None when it stayed."""
        target = {"version": prompt.version}
        with self.engine.begin() as connection:
            old = self._labels(connection, prompt.name).get(LATEST)
            if old == target:
                return None
            self._move(connection, prompt.name, LATEST, old, target, actor, REVERTED)
        return target_versions(old)[0] if old else ""

    def register(
        self, prompt: PromptFile, git: GitInfo, actor: str, root: Path | None = None
    ) -> bool:
        """Stores a version if new; moves `latest` to it; bootstraps `production`. The path
        is kept relative to `root`, the prompts folder: the API shows it to callers."""
        stamp = now_utc()
        with self.engine.begin() as connection:
            exists = connection.execute(
                select(prompt_versions.c.version).where(
                    prompt_versions.c.name == prompt.name,
                    prompt_versions.c.version == prompt.version,
                )
            ).first()
            if exists is not None:
                return False
            connection.execute(
                prompt_versions.insert().values(
                    name=prompt.name,
                    version=prompt.version,
                    content=prompt.text,
                    includes=prompt.includes,
                    path=shown_path(prompt.path, root),
                    git_commit=git.commit,
                    git_author=git.author,
                    git_message=git.message,
                    created_at=stamp,
                )
            )
            labels = self._labels(connection, prompt.name)
            target = {"version": prompt.version}
            self._move(connection, prompt.name, LATEST, labels.get(LATEST), target, actor, None)
            if PRODUCTION not in labels:
                reason = "first version of the prompt"
                self._move(connection, prompt.name, PRODUCTION, None, target, actor, reason)
        return True

    def versions(self, name: str) -> list[PromptVersion]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(prompt_versions)
                .where(prompt_versions.c.name == name)
                .order_by(prompt_versions.c.created_at)
            ).all()
        if not rows:
            raise NotFound(f"No prompt named {name!r}.", param="name")
        return [PromptVersion(**_version_row(r)) for r in rows]

    def version(self, name: str, version: str) -> PromptVersionText:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(prompt_versions).where(
                    prompt_versions.c.name == name, prompt_versions.c.version == version
                )
            ).first()
        if row is None:
            raise NotFound(f"Prompt {name!r} has no version {version!r}.", param="version")
        return PromptVersionText(**_version_row(row), content=row.content, includes=row.includes)

    def names(self) -> list[str]:
        with self.engine.connect() as connection:
            query = select(prompt_versions.c.name).distinct().order_by(prompt_versions.c.name)
            return [r.name for r in connection.execute(query)]

    def changed_since(self, since: datetime) -> tuple[list[Row[Any]], list[Row[Any]]]:
        with self.engine.connect() as connection:
            versions = connection.execute(
                select(prompt_versions).where(prompt_versions.c.created_at >= since)
            ).all()
            labels = connection.execute(
                select(prompt_labels).where(prompt_labels.c.updated_at >= since)
            ).all()
        return list(versions), list(labels)

    # --- labels ---------------------------------------------------------------------------
    def labels(self, name: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            return self._labels(connection, name)

    @staticmethod
    def _labels(connection: Any, name: str) -> dict[str, dict[str, Any]]:
        rows = connection.execute(select(prompt_labels).where(prompt_labels.c.name == name))
        return {r.label: dict(r.target) for r in rows}

    @staticmethod
    def _move(
        connection: Any,
        name: str,
        label: str,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        actor: str,
        reason: str | None,
    ) -> None:
        stamp = now_utc()
        key = {"name": name, "label": label}
        values = {"target": new, "updated_at": stamp, "updated_by": actor}
        put_row(connection, prompt_labels, key, values, exists=old is not None)
        connection.execute(
            prompt_label_history.insert().values(
                **key,
                from_target=old,
                to_target=new,
                actor=actor,
                reason=reason,
                at=stamp,
            )
        )

    def promote(
        self, name: str, label: str, target: Mapping[str, Any], actor: str, reason: str | None
    ) -> PromptLabelMoved:
        if label == LATEST:
            raise BadRequest(
                "'latest' is managed by sync: it is always the version of the prompt's file as "
                "it is on disk. To make latest an older version, restore the file (git checkout) "
                "and run `gateway prompts sync`; to pin a version, promote another label "
                "(production, staging, ...).",
                param="label",
            )
        new = normalize_target(target)
        known = {v.version for v in self.versions(name)}
        missing = [v for v in target_versions(new) if v not in known]
        if missing:
            raise NotFound(
                f"Prompt {name!r} has no version {missing[0]!r} (run `gateway prompts sync`).",
                param="version",
            )
        if self.served is not None:
            for version in target_versions(new):
                self._check_model(name, version, self.served)
        with self.engine.begin() as connection:
            old = self._labels(connection, name).get(label)
            if old != new:
                self._move(connection, name, label, old, new, actor, reason)
        return PromptLabelMoved.model_validate(
            {"name": name, "label": label, "from": old, "to": new}
        )

    def _check_model(self, name: str, version: str, served: ServedModels) -> None:
        """A label must not point at a version whose every call would fail: its model must be
        one the gateway serves."""
        row = self.version(name, version)
        try:
            prompt = stored_prompt(name, row.path, row.content, row.includes)
        except PromptError as exc:
            raise BadRequest(
                f"Prompt {name}@{version} no longer passes validation: {exc.problems[0]}",
                param="version",
            ) from None
        problem = served.problem(prompt.model) if prompt.model else None
        if problem is not None:
            raise BadRequest(
                f"Prompt {name}@{version} cannot be promoted, its {problem} (fix `model:` in "
                f"the file and sync the new version, or serve the model in the config)",
                param="version",
            )

    def rollback(self, name: str, label: str, actor: str, reason: str | None) -> PromptLabelMoved:
        """Moves the label back to where it pointed before its last move."""
        with self.engine.connect() as connection:
            last = connection.execute(
                select(prompt_label_history)
                .where(prompt_label_history.c.name == name, prompt_label_history.c.label == label)
                .order_by(prompt_label_history.c.id.desc())
                .limit(1)
            ).first()
        if last is None or last.from_target is None:
            raise BadRequest(f"Label {label!r} of prompt {name!r} has no earlier target.")
        return self.promote(name, label, last.from_target, actor, reason or "rollback")

    def history(self, name: str, label: str | None = None) -> list[PromptLabelMove]:
        query = select(prompt_label_history).where(prompt_label_history.c.name == name)
        if label is not None:
            query = query.where(prompt_label_history.c.label == label)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(prompt_label_history.c.id)).all()
        return [
            PromptLabelMove.model_validate(
                {
                    "label": r.label,
                    "from": r.from_target,
                    "to": r.to_target,
                    "actor": r.actor,
                    "reason": r.reason,
                    "at": _iso(r.at),
                }
            )
            for r in rows
        ]


def version_diff(name: str, old: PromptVersionText, new: PromptVersionText) -> list[str]:
    """A unified diff of two versions: the file, then each partial and named schema they
    include (as `_card.prompt`, `Ticket.schema.json`), so a version that changed only
    through a partial shows where."""
    lines = list(
        difflib.unified_diff(
            _lines(old.content),
            _lines(new.content),
            f"{name}@{old.version}",
            f"{name}@{new.version}",
        )
    )
    before, after = old.includes or {}, new.includes or {}
    for kind, shown in (("partials", "_{}.prompt"), ("schemas", "{}.schema.json")):
        a, b = before.get(kind) or {}, after.get(kind) or {}
        for item in sorted(set(a) | set(b)):
            texts = [_included_text(side.get(item)) for side in (a, b)]
            if texts[0] == texts[1]:
                continue
            label = shown.format(item)
            lines += difflib.unified_diff(
                _lines(texts[0]),
                _lines(texts[1]),
                f"{name}@{old.version}/{label}",
                f"{name}@{new.version}/{label}",
            )
    return lines


def _lines(text: str) -> list[str]:
    """Lines for a diff, the last one ended as git shows it when the text has no final
    line break (a change there reaches the model, so it must show)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _included_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def stored_prompt(
    name: str, path: str | None, content: str, includes: Mapping[str, Any] | None
) -> PromptFile:
    """A stored version, parsed with the partials and schemas it was registered with (a
    version stored without them predates Dotprompt's rendering: legacy)."""
    return parse_prompt(
        Path(path or f"{name}{SUFFIX}"), content, includes=includes, legacy=includes is None
    )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def shown_path(path: Path | str | None, root: Path | None = None) -> str | None:
    """A prompt file's path relative to the prompts folder, never where it is on the server
    (rows stored before paths were relative show the file name alone)."""
    if path is None:
        return None
    path = Path(path)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path.name if path.is_absolute() else path.as_posix()


def hide_root(problem: str, root: Path) -> str:
    """A validation message without the server's path of the prompts folder."""
    for prefix in sorted({str(root.resolve()), str(root)}, key=len, reverse=True):
        if prefix not in (".", ""):
            start = r"(?<![\w./-])"  # whole path components only
            problem = re.sub(start + re.escape(prefix.rstrip("/") + "/"), "", problem)
    return problem


def _version_row(row: Row[Any]) -> dict[str, Any]:
    return {
        "name": row.name,
        "version": row.version,
        "path": shown_path(row.path),
        "git_commit": row.git_commit,
        "git_author": row.git_author,
        "git_message": row.git_message,
        "created_at": _iso(row.created_at),
    }

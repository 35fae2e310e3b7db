"""Where the project is, found as git finds its repository: from the current folder up to the
first folder holding `config/gateway.yaml` or `.gateway/`. The settings whose defaults are
relative paths (config, data dir, prompts dir) are anchored there, so the CLI does the same
from any subfolder; settings given explicitly (environment or flags) are kept as given, a
relative one relative to the current folder as users expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.core.settings import Settings

# A copy of the repository's config/gateway.yaml, shipped inside the package so that
# `gateway serve` runs anywhere (tests/test_project_discovery.py keeps the two identical).
BUILTIN_CONFIG = Path(__file__).resolve().with_name("default_config.yaml")
CONFIG_MARKER = Path("config") / "gateway.yaml"
DATA_MARKER = Path(".gateway")
ANCHORED = ("config", "data_dir", "prompts_dir")


def find_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding config/gateway.yaml or .gateway/."""
    for folder in (start, *start.parents):
        if (folder / CONFIG_MARKER).is_file() or (folder / DATA_MARKER).is_dir():
            return folder
    return None


@dataclass(frozen=True)
class Project:
    """Settings with their relative defaults anchored, and how they were found."""

    settings: Settings
    cwd: Path
    root: Path | None  # None: no project from cwd up
    builtin_config: bool  # no config file to be found: the built-in one is used
    explicit: frozenset[str]  # settings the user gave (environment or flags)

    @property
    def stray(self) -> bool:
        """No project, and nothing says where data goes: a data folder would be made in cwd."""
        chosen = "data_dir" in self.explicit or self.settings.database_url
        return self.root is None and not chosen

    def no_project(self, writes: bool = False) -> str:
        fix = "run from your project or set GATEWAY_DATA_DIR"
        if writes:
            fix = "run from your project, set GATEWAY_DATA_DIR, or `mkdir .gateway` to start one "
            fix += "here"
        return (
            f"no gateway project here (looked for {CONFIG_MARKER} or {DATA_MARKER}/ from "
            f"{self.cwd} up); {fix}"
        )

    def notice(self, serving: bool = True, models: Sequence[str] = ()) -> str | None:
        """One line for commands that run the gateway (serve, an in-process eval run) where
        they fall back on defaults: the built-in config, or a data folder made here."""
        parts = []
        if serving and self.builtin_config:
            listed = f" (models: {', '.join(models)})" if models else ""
            parts.append(
                f"no {CONFIG_MARKER} found from {self.cwd} up: using the built-in default "
                f"config{listed}"
            )
        if self.stray:
            parts.append(
                f"no project found, so data is kept in {self.settings.data_dir} (set "
                f"GATEWAY_DATA_DIR to keep it elsewhere)"
            )
        return "; ".join(parts) or None


def discover(settings: Settings, cwd: Path | None = None) -> Project:
    """Anchor the relative defaults of `settings` at the project found from `cwd` (or at
    `cwd` when there is none); with no config file anywhere, the built-in config."""
    here = cwd or Path.cwd()
    root = find_root(here)
    explicit = frozenset(settings.model_fields_set)
    updates = {
        name: (root or here) / Settings.model_fields[name].default
        for name in ANCHORED
        if name not in explicit
    }
    builtin = "config" in updates and not updates["config"].is_file()
    if builtin:
        updates["config"] = BUILTIN_CONFIG
    return Project(settings.model_copy(update=updates), here, root, builtin, explicit)

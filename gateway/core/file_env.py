"""A config file's `environment_variables` and its `os.environ/NAME` references.

LiteLLM sets the variables of its config's `environment_variables` section in the proxy's
environment, replacing values already set (with a warning when one differs) and skipping a few
that would change how the process runs (PATH, LD_PRELOAD, ...). The gateway does the same when
it serves (`export`), and the file's references see the file's values first, so
`gateway config check` resolves them as `gateway serve` will.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.litellm_support import Note, Status
from gateway.core.yamlfile import YamlDocument

log = logging.getLogger("gateway.config")

ENV_PREFIX = "os.environ/"

# LiteLLM's list: variables that change how a process runs, loads libraries or routes traffic.
BLOCKED = frozenset(
    {
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "HOME",
        "USER",
        "SHELL",
        "LOGNAME",
        "NO_PROXY",
        "no_proxy",
    }
)
# Read before the config is: a value here would apply to some workers' settings and not others.
OWN_PREFIX = "GATEWAY_"


def referenced(value: Any) -> str | None:
    """The variable an `os.environ/NAME` value names, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX) :]
    return None


@dataclass
class FileEnvironment:
    """The file's variables (values as strings) over the process environment."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(
        cls, doc: YamlDocument, section: Mapping[str, Any], notes: list[Note]
    ) -> FileEnvironment:
        values: dict[str, str] = {}
        for name, value in section.items():
            where = doc.where(("environment_variables", name))
            path = f"environment_variables.{name}"
            if name in BLOCKED or name.startswith(OWN_PREFIX):
                why = "it would change how the process runs"
                if name.startswith(OWN_PREFIX):
                    why = "the gateway's settings are read before its config"
                notes.append(
                    Note(where, path, Status.IGNORED, f"not set: {why}; set it in the environment")
                )
                continue
            name_ref = referenced(value)
            if name_ref is not None:
                resolved = os.environ.get(name_ref)
                if resolved is None:
                    notes.append(
                        Note(
                            where,
                            path,
                            Status.IGNORED,
                            f"not set: environment variable {name_ref} is not set",
                        )
                    )
                    continue
                value = resolved
            # YAML's true/false become the strings LiteLLM would set (str(True) == "True").
            values[name] = str(value)
        return cls(values)

    def get(self, name: str) -> str | None:
        found = self.values.get(name)
        return found if found is not None else os.environ.get(name)

    def export(self) -> None:
        """Sets the file's variables in this process, as LiteLLM does: for the providers that
        read credentials from the environment (litellm's Bedrock, Vertex, ...)."""
        for name, value in self.values.items():
            if os.environ.get(name, value) != value:
                log.warning(
                    "environment_variables.%s from the config file replaces the value already "
                    "set in the environment (as LiteLLM does)",
                    name,
                )
            os.environ[name] = value


def missing_variable(
    value: Any, loc: tuple[str | int, ...], env: FileEnvironment
) -> tuple[tuple[str | int, ...], str] | None:
    """The first `os.environ/NAME` reference in value whose variable is not set."""
    name = referenced(value)
    if name is not None:
        return (loc, name) if env.get(name) is None else None
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        found = missing_variable(child, (*loc, key), env)
        if found is not None:
            return found
    return None


def resolve(value: Any, env: FileEnvironment) -> Any:
    name = referenced(value)
    if name is not None:
        return env.get(name)
    if isinstance(value, dict):
        return {k: resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    return value

"""What loading a config found that the gateway does not apply as LiteLLM would.

Kept with the loaded config so that `gateway config check` prints it, the gateway logs it as
warnings when it starts, and a request for a model whose deployments were all left out is told
why instead of getting a plain 404.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gateway.core.file_env import FileEnvironment
from gateway.core.litellm_support import Note, Status
from gateway.core.yamlfile import one_line


@dataclass(frozen=True)
class LeftOut:
    """A deployment left out because a variable it names is not set; as in LiteLLM, the rest
    of the file loads."""

    where: str  # file:line
    index: int
    alias: str
    path: str  # model_list[2].litellm_params.api_key
    variable: str

    def line(self) -> str:
        return one_line(
            f"{self.where}: {self.path}: environment variable {self.variable} is not set, so "
            f"model_list[{self.index}] (model {self.alias!r}) is left out; the rest loads "
            f"(export {self.variable} to serve it)"
        )


@dataclass(frozen=True)
class FromFile:
    """A general_settings value the gateway takes over (master_key, database_url): its value,
    or why it has none (it names an unset variable), said only if it is used."""

    value: str | None = None
    problem: str | None = None


@dataclass
class LoadReport:
    notes: list[Note] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    environment: FileEnvironment = field(default_factory=FileEnvironment)
    master_key: FromFile = field(default_factory=FromFile)
    database_url: FromFile = field(default_factory=FromFile)

    def ignored(self) -> list[Note]:
        return [n for n in self.notes if n.status is Status.IGNORED]

    def differently(self) -> list[Note]:
        return [n for n in self.notes if n.status is Status.DIFFERENTLY]

    def warnings(self) -> list[str]:
        return [n.line() for n in self.notes] + [d.line() for d in self.left_out]

    def unavailable(self, served: set[str]) -> dict[str, str]:
        """Callers' messages for the models none of whose deployments loaded."""
        missing: dict[str, list[str]] = {}
        for deployment in self.left_out:
            if deployment.alias not in served:
                names = missing.setdefault(deployment.alias, [])
                if deployment.variable not in names:
                    names.append(deployment.variable)
        return {alias: _unavailable(alias, names) for alias, names in missing.items()}

    def log(self, logger: logging.Logger) -> None:
        for line in self.warnings():
            logger.warning("%s", line)


def _unavailable(alias: str, names: list[str]) -> str:
    variables = f"environment variable {names[0]} is"
    if len(names) > 1:
        variables = f"environment variables {', '.join(names)} are"
    return (
        f"The model {alias!r} is not available: the gateway left its deployments out when it "
        f"started because {variables} not set. Tell the gateway's operator."
    )

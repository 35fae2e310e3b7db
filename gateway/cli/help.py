"""Help screens that read naturally.

Typer's rich help gives every flag a value type (`--no-cache <bool>`, even `--help <bool>`),
though a flag takes no value, and a repeatable option its Python type (`--model <list[str]>`).
Fixed here once, on the built command tree, so every group and command gets it without
declaring anything: flags show no type, repeatable options and arguments their element's,
and arguments their name in capitals as the README writes them (`gateway prompts show NAME`).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

LIST = re.compile(r"list\[(.*)\]")


def tidy(command: Any) -> Any:
    """The command, and each under it, with its help screen's names and types tidied."""
    context = typer.Context(command)
    for param in command.get_params(context):  # this makes the --help option too
        if isinstance(param, TyperOption):
            if param.is_flag:
                param.metavar = ""
            elif param.multiple and param.metavar is None:
                param.metavar = _element(param.display_type(context))
        elif isinstance(param, TyperArgument):
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            if param.nargs != 1:  # an argument's type has no metavar to set: its own shows it
                shown = _element(param.display_type(context)) + "..."
                param.display_type_rich = functools.partial(_shown, shown)  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
    return command


def _shown(shown: str, ctx: Any) -> str:
    return shown


def _element(shown: str) -> str:
    """`<list[Path]>` as `<path>`, the way a single value's type shows."""
    return LIST.sub(lambda match: match.group(1).lower(), shown)

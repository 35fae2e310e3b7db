"""`gateway prompts ...`: validate files, register versions, move labels, preview renders."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import actor, engine, fail, run, run_gated, settings
from gateway.core.wording import plural

prompts_app = typer.Typer(no_args_is_help=True, help="Prompt files, versions and labels.")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="The gateway's config: prompts may name its models (GATEWAY_CONFIG)."
    ),
]


def _store(writes: bool = False, served: Any = None) -> Any:
    """`served`: the models prompts may name, checked at sync and promote (None: not checked)."""
    from gateway.prompts.store import PromptStore

    return PromptStore(engine(writes), served)


def _served(config: Path | None) -> Any:
    """The models prompts may name, from the config `gateway serve` would load. Secrets are
    not resolved: checking prompts in CI needs no API keys."""
    served = _load_served(config)
    if isinstance(served, str):
        fail(served)
    return served


def _load_served(config: Path | None) -> Any:
    """ServedModels, or why the config cannot be read (never a silently skipped check)."""
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError
    from gateway.prompts.served import ServedModels

    path = config or settings().config
    try:
        loaded = load_config(path, secrets=False)
    except ConfigError as exc:
        return (
            f"cannot check the prompts' models against the gateway's config: {exc} "
            f"(set GATEWAY_CONFIG or pass --config)"
        )
    return ServedModels.from_config(loaded, str(path))


@prompts_app.command("validate")
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders.")] = None,
    config: ConfigOption = None,
) -> None:
    """Check prompt files, and that their models are served; prints `file:line: message` and
    exits 2 on any problem."""
    from gateway.prompts.files import PromptError, parse_prompt, scan
    from gateway.prompts.library import is_partial, load_library

    folder = settings().prompts_dir
    targets = paths or [folder]
    missing: list[str] = []
    files: list[Any] = []
    errors: list[PromptError] = []
    for target in targets:
        if target.is_dir():
            found, failed = scan(target)
            files, errors = files + found, errors + failed
        elif target.exists():
            # Its partials and schemas: the prompts folder's when the file is in it.
            inside = folder.resolve() in target.resolve().parents
            library = load_library(folder if inside else target.parent)
            if is_partial(target):  # checked with the library it belongs to
                problems = library.problems.get(target)
                errors += [PromptError(target, problems)] if problems else []
                continue
            try:
                files.append(parse_prompt(target, library=library))
            except PromptError as error:
                errors.append(error)
        else:
            missing.append(f"{target}: no such file or folder")
    # The config is read only when a valid file names a model: a file that fails on its own
    # is reported without one.
    served = _load_served(config) if any(prompt.model for prompt in files) else None
    if served is not None and not isinstance(served, str):
        files, unserved = served.split(files)
        errors += unserved
    problems = [
        line for error in sorted(errors, key=lambda e: str(e.path)) for line in error.problems
    ]
    problems += missing
    if isinstance(served, str):
        problems.append(f"error: {served}")
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(2)  # bad input, as `config check` and `eval validate` say it
    checked = f" (models checked against {served.source})" if served is not None else ""
    typer.echo(f"{plural(len(files), 'prompt file')} valid{checked}")


@prompts_app.command("sync")
def sync(
    directory: Annotated[Path | None, typer.Option("--dir", help="Prompts folder.")] = None,
    config: ConfigOption = None,
) -> None:
    """Register new versions from the working tree (with the Git commit when committed) and
    point `latest` at each file's version as it is now."""
    from gateway.prompts.store import REVERTED

    store = _store(writes=True, served=_served(config))
    report = store.sync(directory or settings().prompts_dir, actor=actor())
    for name, version in report.registered:
        typer.echo(f"registered {name}@{version}")
    for name, version, old in report.latest_moved:
        typer.echo(f"latest {name}@{version} (was {old or 'none'}): {REVERTED}")
    for name, latest in report.removed:
        typer.echo(
            f"{name}: file removed; latest stays at {latest or 'none'} "
            f"(labels keep serving until you move them)"
        )
    typer.echo(f"{len(report.registered)} new, {len(report.unchanged)} unchanged")
    for line in report.problems():
        typer.echo(line, err=True)
    if report.errors:
        raise typer.Exit(1)


@prompts_app.command("list")
def list_prompts() -> None:
    """Prompts with their labels; `(file removed)` when the prompts folder has no file for it."""
    from gateway.prompts.files import prompt_name, prompt_paths
    from gateway.prompts.models import as_target

    store = _store()
    folder = settings().prompts_dir
    on_disk = {prompt_name(p) for p in prompt_paths(folder)}
    for name in store.names():
        labels = store.labels(name)
        shown = ", ".join(f"{label}={as_target(t)}" for label, t in sorted(labels.items()))
        gone = "  (file removed)" if folder.is_dir() and name not in on_disk else ""
        typer.echo(f"{name:30} {shown}{gone}")


def _resolve_version(store: Any, name: str, ref: str) -> str:
    target = store.labels(name).get(ref)
    if target is not None:
        if "version" not in target:
            fail(f"label {ref!r} splits traffic; name a version instead")
        return str(target["version"])
    return ref


@prompts_app.command("show")
def show(
    name: str,
    ref: Annotated[str, typer.Argument(help="Version or label.")] = "production",
) -> None:
    """Print one version's file (by version id or label)."""
    store = _store()
    version = run(lambda: store.version(name, _resolve_version(store, name, ref)))
    meta = version.model_dump(exclude={"content"}, exclude_none=True)
    typer.echo(json.dumps(meta, indent=2))
    typer.echo(version.content)


@prompts_app.command("diff")
def diff(name: str, old: str, new: Annotated[str, typer.Argument()] = "latest") -> None:
    """Unified diff between two versions or labels."""
    store = _store()
    old_v, new_v = _resolve_version(store, name, old), _resolve_version(store, name, new)
    from gateway.prompts.store import version_diff

    a = run(lambda: store.version(name, old_v))
    b = run(lambda: store.version(name, new_v))
    lines = version_diff(name, a, b)
    for line in lines:
        typer.echo(line, nl=False)
    if not lines:  # on stderr: stdout stays a patch (an empty one)
        same = f"are both version {old_v}" if old_v == new_v else "have the same content"
        typer.echo(f"no difference: {name}@{old} and {name}@{new} {same}", err=True)


@prompts_app.command("render")
def render(
    name: str,
    label: Annotated[str | None, typer.Option(help="Label (default production).")] = None,
    version: Annotated[str | None, typer.Option(help="Exact version.")] = None,
    variables: Annotated[str, typer.Option("--vars", help="JSON object.")] = "{}",
    context: Annotated[str, typer.Option(help="The `@` data, a JSON object.")] = "{}",
    messages: Annotated[
        str, typer.Option(help="A call's own messages (JSON array), placed as history.")
    ] = "[]",
    user: Annotated[str | None, typer.Option(help="Sticky user for split labels.")] = None,
) -> None:
    """Print the messages a call would send (no model call); `@auth` is the master key's."""
    from gateway.prompts.catalog import PromptCatalog
    from gateway.prompts.context import auth_data
    from gateway.prompts.models import RenderedPrompt
    from gateway.prompts.render import PromptRenderer

    values = _json_option("--vars", variables, object)
    data = _json_option("--context", context, dict)
    history = _json_option("--messages", messages, list)
    catalog = PromptCatalog(_store())
    catalog.refresh()
    prompt = run(lambda: catalog.resolve(name, label, version, user))
    auth = auth_data("master", None, None, None, None)
    rendered = run(
        lambda: asyncio.run(PromptRenderer().render(prompt, values, data, history, auth))
    )
    shown = RenderedPrompt(
        name=name,
        version=prompt.version,
        model=prompt.model,
        config=prompt.config,
        messages=rendered,
        ext=prompt.ext,
    )
    typer.echo(json.dumps(shown.model_dump(), indent=2))


def _json_option(option: str, raw: str, kind: type) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        fail(f"{option} is not JSON: {exc}")
    if not isinstance(value, kind):
        fail(f"{option} must be a JSON {'array' if kind is list else 'object'}")
    return value


@prompts_app.command("promote")
def promote(
    name: str,
    version: Annotated[
        str | None,
        typer.Argument(help="Version to point the label at, or a label: the version it names."),
    ] = None,
    label: Annotated[str, typer.Option(help="Label to move.")] = "production",
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Split traffic: VERSION=WEIGHT,... (a label stands for its version)."),
    ] = None,
    require_eval: Annotated[
        str | None, typer.Option(help="Refuse unless this suite has a passing run of it.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Move a label to a version (or split it across versions by weight). Labels given for
    versions (`latest`, `production=90,latest=10`) name the versions they point at now."""
    pairs: list[tuple[str, float]] = []
    if weights:
        try:
            pairs = [
                (ref.strip(), float(w)) for ref, w in (i.split("=", 1) for i in weights.split(","))
            ]
        except ValueError:
            fail("--weights looks like abc123=90,def456=10 (or production=90,latest=10)")
    elif not version:
        fail("give a VERSION (or a label) or --weights")
    store = _store(served=_served(config))
    target: dict[str, Any]
    if pairs:
        split: dict[str, float] = {}
        for ref, weight in pairs:  # two labels on one version: one share, their sum
            resolved = _resolve_version(store, name, ref)
            split[resolved] = split.get(resolved, 0.0) + weight
        target = {"weights": split}
    else:
        target = {"version": _resolve_version(store, name, version or "")}
    from gateway.evals.store import EvalStore
    from gateway.prompts.promotion import promote as move

    evals = EvalStore(store.engine)
    who = actor()
    result = run_gated(
        lambda: move(
            store, evals, name, label, target, actor=who, reason=reason, require_eval=require_eval
        )
    )
    typer.echo(f"{name}: {label} {_fmt(result.since)} -> {_fmt(result.to)}")


def _fmt(target: object | None) -> str:
    """A label target (prompts.models.LabelTarget) as `list` and `history` show it."""
    return str(target) if target else "(none)"


@prompts_app.command("rollback")
def rollback(
    name: str,
    label: Annotated[str, typer.Option(help="Label to move back.")] = "production",
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Move a label back to where it pointed before its last move."""
    store = _store()
    result = run(lambda: store.rollback(name, label, actor(), reason))
    typer.echo(f"{name}: {label} {_fmt(result.since)} -> {_fmt(result.to)}")


@prompts_app.command("history")
def history(
    name: str, label: Annotated[str | None, typer.Option(help="Only this label.")] = None
) -> None:
    """Every label move: when, who, from, to, why."""
    for move in run(lambda: _store().history(name, label)):
        typer.echo(
            f"{move.at}  {move.label:12} {_fmt(move.since):>14} -> "
            f"{_fmt(move.to):14} {move.actor}" + (f": {move.reason}" if move.reason else "")
        )

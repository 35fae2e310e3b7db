"""`gateway registry ...`: register model versions with their lineage, move labels, inspect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import actor, engine, fail, run, run_gated, settings
from gateway.core.validation import first_problem

if TYPE_CHECKING:
    from gateway.registry.models import RegistryVersion

registry_app = typer.Typer(
    no_args_is_help=True, help="Model registry: versions, lineage, labels and their approvals."
)


def _store(writes: bool = False) -> Any:
    from gateway.registry.store import RegistryStore

    return RegistryStore(engine(writes))


def _ref(text: str) -> Any:
    from gateway.core.model_refs import parse_ref

    return run(lambda: parse_ref(text))


def _pairs(option: str, items: list[str]) -> dict[str, Any]:
    """`k=v` options; a value that parses as JSON keeps its type (3, 2e-4, true, [1, 2])."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"{option} {item!r}: write KEY=VALUE, e.g. {option} learning_rate=2e-4")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def _config() -> Any:
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError

    try:
        return load_config(settings().config, secrets=False)
    except ConfigError as exc:
        fail(str(exc))


def _aliases() -> list[str]:
    aliases: list[str] = _config().aliases()
    return aliases


def _dataset_hash(dataset: str | None) -> str | None:
    """sha256 of a local dataset file; a URI's content is not fetched (give --dataset-hash)."""
    from gateway.registry.hashing import sha256_file

    if dataset is None or "://" in dataset:
        return None
    path = Path(dataset)
    if not path.is_file():
        fail(
            f"--dataset {dataset}: no such file (give an existing file to hash, or a URI such "
            f"as s3://bucket/train.jsonl with --dataset-hash)"
        )
    return sha256_file(path)


@registry_app.command("register")
def register(
    name: str,
    alias: Annotated[str, typer.Option(help="The config model_name that serves this version.")],
    kind: Annotated[str, typer.Option(help="llm or classic.")] = "llm",
    base: Annotated[
        str | None,
        typer.Option(help="What it was built on: NAME@REF in the registry, or an external name."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Training data: a local file (hashed) or a URI.")
    ] = None,
    dataset_hash: Annotated[str | None, typer.Option(help="sha256:... of a --dataset URI.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Hyperparameter KEY=VALUE (repeat).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What changed, in a line.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat).")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Metadata KEY=VALUE (repeat).")
    ] = None,
    artifact: Annotated[
        Path | None,
        typer.Option(help="Classic: the model file served in process (hashed, signature read)."),
    ] = None,
    framework: Annotated[
        str | None,
        typer.Option(help="skops, onnx, joblib or pickle (default: from --artifact's suffix)."),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(help="A JSON file {inputs, outputs} overriding the artifact's own."),
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="A skops type to trust after reviewing it (repeat)."),
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option(help="Allow a joblib/pickle --artifact (it runs code when loaded).")
    ] = False,
    label_column: Annotated[
        str | None,
        typer.Option(help="Classic: the --dataset column that is not a feature (the label)."),
    ] = None,
    expectations: Annotated[
        Path | None,
        typer.Option(help="Classic: a JSON or YAML file of per-feature expectations."),
    ] = None,
    enforce_expectations: Annotated[
        bool,
        typer.Option(help="Classic: refuse calls (400) whose values break the expectations."),
    ] = False,
) -> None:
    """Register the next version of NAME (1, 2, 3...). A classic version with a --dataset
    CSV or Parquet file records each feature's range, categories and null rate from it."""
    from pydantic import ValidationError

    from gateway.registry.spec import VersionSpec

    computed = _dataset_hash(dataset)
    classic: dict[str, Any] = {}
    if artifact is not None:
        classic = _artifact_fields(artifact, framework, signature, trust or [], trust_pickle)
        classic.update(
            _expected(
                dataset, classic["signature"], label_column, expectations, enforce_expectations
            )
        )
        kind = "classic"
    elif framework or signature or trust or trust_pickle:
        fail("--framework, --signature, --trust and --trust-pickle describe an --artifact")
    elif label_column or expectations or enforce_expectations:
        fail(
            "--label-column, --expectations and --enforce-expectations describe a classic "
            "version's --artifact"
        )
    fields = {
        "alias": alias,
        "kind": kind,
        "base": base,
        "dataset": dataset,
        "dataset_hash": dataset_hash or computed,
        "hyperparameters": _pairs("--param", param or []),
        "description": description,
        "tags": tag or [],
        "metadata": _pairs("--meta", meta or []),
        **classic,
    }
    try:
        spec = VersionSpec.model_validate(fields)
    except ValidationError as exc:
        loc, message = first_problem(exc)
        option = "--" + str(loc[0] if loc else "").replace("_", "-")
        fail(f"{option}: {message}")
    if computed and spec.dataset_hash != computed:
        fail(f"--dataset-hash {dataset_hash} does not match the file ({computed})")
    aliases = _aliases()
    store = _store(writes=True)
    version = run(lambda: store.register(name, spec, aliases=aliases, actor=actor()))
    typer.echo(f"registered {version.ref} (alias {version.alias})")


def _artifact_fields(
    artifact: Path, framework: str | None, signature: Path | None, trust: list[str], pickle: bool
) -> dict[str, Any]:
    """What a classic version records of its artifact, read from the file itself."""
    from gateway.classic.artifacts import ArtifactProblem, framework_of, inspect
    from gateway.classic.signature import Signature

    if not artifact.is_file():
        fail(f"--artifact {artifact}: no such file")
    try:
        chosen = framework or framework_of(artifact)
        found = inspect(artifact, chosen, trust, pickle)
    except ArtifactProblem as exc:
        fail(f"--artifact {exc}")
    described = found.signature
    if signature is not None:
        try:
            described = Signature.parse(json.loads(signature.read_text()), "--signature")
        except (OSError, ValueError) as exc:
            fail(f"--signature {signature}: {exc}")
    return {
        "artifact": str(artifact.resolve()),
        "artifact_sha256": found.sha256,
        "framework": chosen,
        "signature": described,
        "trusted_types": trust,
        "trusted": pickle,
    }


def _expected(
    dataset: str | None,
    signature: Any,
    label_column: str | None,
    given: Path | None,
    enforce: bool,
) -> dict[str, Any]:
    """The expectations (and, for numeric features, statistics) a classic version records:
    from --expectations FILE, else from a --dataset CSV or Parquet file."""
    import yaml

    from gateway.classic.datafiles import SUFFIXES, DataFileProblem
    from gateway.classic.expectations import Expectations

    if given is not None:
        try:
            data = yaml.safe_load(given.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            fail(f"--expectations {given}: {exc}")
        found = run(lambda: Expectations.parse(data, "--expectations"))
        return {"expectations": found.model_copy(update={"enforce": enforce or found.enforce})}
    local = dataset is not None and "://" not in dataset
    if not local or Path(str(dataset)).suffix.lower() not in SUFFIXES:
        if enforce or label_column:
            fail(
                "--enforce-expectations and --label-column need a --dataset CSV or Parquet "
                "file to record expectations from (or give them: --expectations FILE)"
            )
        return {}
    try:
        return _recorded(Path(str(dataset)), signature, label_column, enforce)
    except DataFileProblem as exc:
        fail(f"--dataset {exc}")


def _recorded(
    path: Path, signature: Any, label_column: str | None, enforce: bool
) -> dict[str, Any]:
    from gateway.classic.datafiles import expectations_from, is_numeric, read_table
    from gateway.classic.stats import feature_stats

    frame = read_table(path)
    if label_column is not None and label_column not in frame.columns:
        fail(f"--label-column {label_column!r}: {path} has {', '.join(frame.columns)}")
    features = signature.features
    if features:
        missing = [f for f in features if f not in frame.columns]
        if missing:
            fail(
                f"--dataset {path}: no column for the signature's feature(s) "
                f"{', '.join(map(repr, missing))} (columns: {', '.join(frame.columns)})"
            )
    else:
        features = [c for c in frame.columns if c != label_column]
        shape = signature.inputs[0].shape if len(signature.inputs) == 1 else []
        width = shape[1] if len(shape) == 2 else None
        if width is None or width != len(features):
            fail(
                f"--dataset {path}: {len(features)} columns besides the label, but the model "
                f"takes {width if width is not None else 'no single 2-D input of'} features: "
                f"name the label column with --label-column"
                + (f" ({', '.join(frame.columns)})" if len(frame.columns) < 50 else "")
            )
        signature = signature.model_copy(update={"features": features})
    recorded: dict[str, Any] = {
        "signature": signature,
        "expectations": expectations_from(frame, features, enforce),
    }
    if all(is_numeric(frame[f]) for f in features):
        recorded["feature_stats"] = feature_stats(frame[features].to_numpy(), features)
    return recorded


@registry_app.command("train-example")
def train_example(
    name: Annotated[str, typer.Option(help="The registry model to register it as.")] = "iris",
    dataset: Annotated[
        str, typer.Option(help="A data set bundled with scikit-learn: iris, wine, breast_cancer.")
    ] = "iris",
    alias: Annotated[
        str | None,
        typer.Option(help="The config model_name serving it (default: the one of registry/NAME)."),
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="Who approves the production label (default: you).")
    ] = None,
    enforce_expectations: Annotated[
        bool,
        typer.Option(help="Refuse calls (400) with values outside the training data's range."),
    ] = False,
) -> None:
    """Train scikit-learn on a data set it ships (offline), save it with skops, register it
    with the data set's sha256, feature statistics and drift reference, and label it
    production."""
    from gateway.classic.example import DATASETS
    from gateway.classic.example import train_example as train
    from gateway.core.model_refs import check_name
    from gateway.drift.reference import REGISTRY_KEY, build_reference
    from gateway.registry.promotion import promote
    from gateway.registry.spec import VersionSpec

    if dataset not in DATASETS:
        fail(f"--dataset {dataset!r}: one of {', '.join(DATASETS)}")
    run(lambda: check_name(name))
    config = _config()
    served = [
        m.model_name for m in config.model_list if m.litellm_params.model == f"registry/{name}"
    ]
    chosen = alias or (served[0] if served else name)
    if chosen not in config.aliases():
        fail(
            f"no model_name {chosen!r} in the config to serve it: add one with "
            f"litellm_params.model: registry/{name} (config/gateway.yaml has iris)"
        )
    typer.echo(f"training on the {dataset} data set bundled with scikit-learn...", err=True)
    folder = settings().data_dir / "models" / name
    trained = train(dataset, folder)
    rows = len(trained.training_columns["predict"])
    reference = build_reference(  # what its served calls' drift is measured against
        trained.training_columns,
        source=f"training data: sklearn.datasets.load_{dataset}, {rows} rows",
    )
    spec = VersionSpec(
        alias=chosen,
        kind="classic",
        dataset=str(trained.dataset.resolve()),
        dataset_hash=trained.dataset_sha256,
        hyperparameters=trained.hyperparameters,
        description=f"example: scikit-learn on sklearn.datasets.load_{dataset}",
        tags=["example"],
        metadata={
            "accuracy": trained.accuracy,
            "classes": trained.classes,
            REGISTRY_KEY: reference.to_json(),
        },
        artifact=str(trained.artifact.resolve()),
        artifact_sha256=trained.artifact_sha256,
        framework="skops",
        signature=trained.signature,
        feature_stats=trained.feature_stats,
        expectations=trained.expectations.model_copy(update={"enforce": enforce_expectations}),
    )
    store = _store(writes=True)
    who = actor()
    version = run(lambda: store.register(name, spec, aliases=config.aliases(), actor=who))
    typer.echo(
        f"registered {version.ref} (alias {version.alias}; accuracy {trained.accuracy:.3f} on "
        f"held-out rows; {trained.artifact})"
    )
    moved = run(
        lambda: promote(
            store,
            store.evals,
            _ref(version.ref),
            "production",
            approver=approver or who,
            actor=who,
            reason="gateway registry train-example",
        )
    )
    typer.echo(f"{name}: production {moved.since or '(none)'} -> {moved.to}")


@registry_app.command("list")
def list_models() -> None:
    """Registered models: latest version and labels."""
    for model in _store().models():
        labels = ", ".join(f"{k}={v}" for k, v in sorted(model.labels.items()))
        typer.echo(f"{model.name:30} latest={model.latest:<5} {labels}")


def _line(version: RegistryVersion) -> str:
    line = f"{version.ref:30} alias={version.alias}"
    base = version.base
    if base:
        line += f"  base={base.ref}" + (" (external)" if base.kind == "external" else "")
    return line + f"  {version.created_at[:19]} by {version.created_by}"


@registry_app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME (all versions) or NAME@REF.")]) -> None:
    """A model's versions and labels, or one version (JSON) with its linked eval runs."""
    target = _ref(ref)
    store = _store()
    if "@" in ref:
        typer.echo(json.dumps(run(lambda: store.version(target)).model_dump(), indent=2))
        return
    model = run(lambda: store.model(target.name))
    labels = ", ".join(f"{k}={v}" for k, v in sorted(model.labels.items())) or "no labels"
    typer.echo(f"{model.name}: latest {model.latest}; {labels}")
    for version in model.versions:
        typer.echo("  " + _line(version))


@registry_app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@LABEL: its version now).")],
    label: Annotated[str, typer.Argument(help="The label to move: production, staging...")],
    approver: Annotated[str, typer.Option(help="Who signed the promotion off (recorded).")],
    require_eval: Annotated[
        str | None, typer.Option(help="Refuse unless this suite has a passing run of it.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
) -> None:
    """Point LABEL at a version; the move is recorded with its approver."""
    from gateway.registry.promotion import promote as move

    if "@" not in ref:
        fail(f"name the version to promote: {ref}@VERSION (or {ref}@LABEL)")
    target = _ref(ref)
    store = _store()
    who = actor()
    result = run_gated(
        lambda: move(
            store,
            store.evals,
            target,
            label,
            approver=approver,
            actor=who,
            require_eval=require_eval,
            reason=reason,
        )
    )
    moved = f"{result.since or '(none)'} -> {result.to}"
    gate = f"; eval run {result.eval_run}" if result.eval_run else ""
    typer.echo(f"{target.name}: {label} {moved} (approved by {result.approver}{gate})")


@registry_app.command("history")
def history(
    name: str, label: Annotated[str | None, typer.Option(help="Only this label.")] = None
) -> None:
    """Every label move: when, label, from, to, approver, who made it, eval run, why."""
    for move in run(lambda: _store().history(name, label)):
        gate = f" [{move.eval_suite}: {move.eval_run}]" if move.eval_run else ""
        typer.echo(
            f"{move.at[:19]}  {move.label:12} {move.since or '(none)'!s:>6} -> "
            f"{move.to!s:6} approved by {move.approver} (by {move.actor}){gate}"
            + (f": {move.reason}" if move.reason else "")
        )


@registry_app.command("lineage")
def lineage(ref: Annotated[str, typer.Argument(help="NAME[@REF] (default: latest).")]) -> None:
    """What a version was built on (up to its external base) and what was built on it."""
    target = _ref(ref)
    tree = run(lambda: _store().lineage(target))
    typer.echo(_line(tree.version))
    typer.echo("built on:")
    for version in tree.ancestors:
        typer.echo("  " + _line(version))
    root = (tree.ancestors or [tree.version])[-1].base
    if root and root.kind == "external":
        typer.echo(f"  {root.ref} (external)")
    elif not tree.ancestors:
        typer.echo("  (nothing recorded)")
    typer.echo("built on it:")
    for version in tree.descendants:
        typer.echo("  " * version.depth + _line(version))
    if not tree.descendants:
        typer.echo("  (nothing yet)")


finetune_app = typer.Typer(
    no_args_is_help=True, help="Fine-tunes made with a provider, imported into the registry."
)
registry_app.add_typer(finetune_app, name="finetune")


def _job_json(path: str) -> Any:
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read it ({exc})")

    def refuse(constant: str) -> None:
        fail(f"{path}: {constant} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        fail(
            f"{path}: not JSON ({exc}): save the job as the API returns it "
            f"(GET /v1/fine_tuning/jobs/ID)"
        )


@finetune_app.command("import")
def import_finetune(
    job: Annotated[
        str, typer.Argument(help="An OpenAI fine-tuning job object, as JSON ('-': stdin).")
    ],
    name: Annotated[
        str | None,
        typer.Option(help="The registry model (default: the fine-tune's suffix, else BASE-ft)."),
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="The model_name serving it (default: the one whose model it is)."),
    ] = None,
) -> None:
    """Register a succeeded fine-tuning job as the next llm version of NAME: its base model,
    job id, training and validation files and hyperparameters. Importing a job again
    registers nothing and says which version it is."""
    from gateway.core.errors import GatewayError
    from gateway.registry.finetunes import import_job
    from gateway.registry.store import AlreadyImported

    data = _job_json(job)
    config = _config()
    deployments = [(m.model_name, m.litellm_params.model) for m in config.model_list]
    store = _store(writes=True)
    try:
        version = import_job(
            store,
            data,
            name=name,
            alias=alias,
            deployments=deployments,
            aliases=config.aliases(),
            source=str(settings().config),
            actor=actor(),
            given_as="stdin" if job == "-" else job,
        )
    except AlreadyImported as exc:  # nothing to do: running an import twice is harmless
        typer.echo(exc.message)
        return
    except GatewayError as exc:
        fail(exc.message)
    base = version.base.ref if version.base is not None else "?"
    typer.echo(
        f"imported {version.job_id} as {version.ref} (alias {version.alias}; base {base}); "
        f"serve it: gateway registry promote {version.ref} production --approver WHO"
    )

"""`gateway index`: check the configured vector collections, adopt one, build the example.

`check` exits 0 when every collection is ok, 1 when one warns (or could not be checked at
all), 2 when one is critical; bad input (an unknown collection, a broken config) is 2 too.
Without --url it runs in this process: a gateway is started in process for the embeddings
the checks need (a probe for the model's dimension, the golden queries), so they go through
the gateway's own embeddings path; with --url the running gateway checks and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli.common import fail, project
from gateway.core.wording import plural

if TYPE_CHECKING:
    from gateway.core.config import GatewayConfig
    from gateway.core.index_config import IndexCollection
    from gateway.core.settings import Settings
    from gateway.indexes.models import CollectionHealth

index_app = typer.Typer(
    no_args_is_help=True,
    help="Vector index health: check the config's collections, adopt one, build the example.",
)
EXIT = {"ok": 0, "warn": 1, "not available": 1, "critical": 2}
BATCH = 32


def _config(settings: Settings) -> GatewayConfig:
    from gateway.core.config import load_config
    from gateway.core.errors import ConfigError

    try:
        return load_config(settings.config)
    except ConfigError as exc:
        fail(str(exc))


def _chosen(config: GatewayConfig, name: str | None) -> list[IndexCollection]:
    collections = config.indexes.collections
    if not collections:
        fail("the config lists no collections under indexes.collections")
    if name is None:
        return list(collections)
    found = [c for c in collections if c.name == name]
    if not found:
        known = ", ".join(c.name for c in collections)
        fail(f"no collection {name!r} under indexes.collections (known: {known})")
    return found


@contextlib.asynccontextmanager
async def _gateway(settings: Settings) -> AsyncIterator[Any]:
    """A gateway in this process (no periodic checks of its own), for its embeddings path."""
    from gateway.api.app import create_app
    from gateway.core.errors import ConfigError
    from gateway.identity.auth import new_master_key

    chosen = settings.model_copy(update={"master_key": new_master_key(), "index_checks": False})
    try:
        app = create_app(chosen)
    except ConfigError as exc:
        fail(str(exc))
    async with app.router.lifespan_context(app):
        yield app.state.gateway


def _embedder(state: Any) -> Any:
    from gateway.calls.internal import CHECKS_CALLER, embed

    async def embed_texts(alias: str, texts: list[str]) -> list[list[float]]:
        return await embed(state.calls, CHECKS_CALLER, alias, texts)

    return embed_texts


async def _check_here(
    settings: Settings, config: GatewayConfig, chosen: list[IndexCollection]
) -> list[CollectionHealth]:
    from gateway.cli.progress import step_progress
    from gateway.indexes.engine import place_of
    from gateway.indexes.prepare import Preparer
    from gateway.indexes.runner import STEPS, check_collection

    found = []
    async with _gateway(settings) as state:
        preparer = Preparer(config, settings.config.parent, _embedder(state), state.query_store)
        for collection in chosen:
            prepared = await preparer.prepare(collection)
            place = place_of(collection, settings.data_dir, settings.qdrant_url)
            with step_progress(f"checking {collection.name}", STEPS) as step:
                health = await asyncio.to_thread(
                    check_collection, collection, place, prepared, None, step
                )
            found.append(health)
    return found


async def _check_there(url: str, key: str, names: list[str]) -> list[CollectionHealth]:
    import httpx

    from gateway.indexes.models import CollectionHealth

    found = []
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=900) as http:
        for name in names:
            try:
                response = await http.get(
                    f"/v1/monitoring/indexes/{name}",
                    params={"refresh": "true"},
                    headers={"authorization": f"Bearer {key}"},
                )
            except httpx.HTTPError as exc:
                fail(f"{url}: unreachable ({exc})")
            if response.status_code != 200:
                try:
                    message = response.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = response.text[:200]
                fail(f"{url}: {response.status_code}: {message}")
            found.append(CollectionHealth.model_validate(response.json()))
    return found


def terminal(health: CollectionHealth) -> str:
    points = f"{health.points} points, " if health.points is not None else ""
    lines = [
        f"{health.name}: {health.status} ({health.engine} at {health.location}, {points}"
        f"checked in {health.seconds:.1f} s)"
    ]
    for check in health.checks:
        lines.append(f"  {check.name:15} {check.status:13} {check.reason or check.summary}")
    if health.ef_curve:
        shown = ", ".join(
            f"{p.hnsw_ef}: {p.recall:.2f} / {p.p95_ms:.2f} ms" for p in health.ef_curve
        )
        lines.append(f"  recall / p95 per hnsw_ef: {shown}")
    return "\n".join(lines) + "\n"


@index_app.command("check")
def check(
    collection: Annotated[
        str | None, typer.Option("--collection", help="Check this collection only.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON (the API's answer).")
    ] = False,
    html: Annotated[
        Path | None, typer.Option(help="Write each collection's report page (NAME.html) here.")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Ask a running gateway to check (default: in process).")
    ] = None,
    key: Annotated[
        str | None, typer.Option(envvar="GATEWAY_MASTER_KEY", help="Master key for --url.")
    ] = None,
) -> None:
    """Check the config's collections: exit 0 ok, 1 warn (or not checkable), 2 critical."""
    from gateway.indexes.models import IndexesHealth, worst

    found = project()
    config = _config(found.settings)
    chosen = _chosen(config, collection)
    if url is not None:
        if not key:
            fail("--url needs --key (or GATEWAY_MASTER_KEY) to ask the gateway")
        results = asyncio.run(_check_there(url, key, [c.name for c in chosen]))
    else:
        results = asyncio.run(_check_here(found.settings, config, chosen))
    overall = worst([h.status for h in results])
    if as_json:
        sys.stdout.write(IndexesHealth(status=overall, data=results).model_dump_json(indent=2))
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(terminal(h) for h in results))
    if html is not None:
        from gateway.indexes.report import html_page

        html.mkdir(parents=True, exist_ok=True)
        for health in results:
            page = html / f"{health.name}.html"
            page.write_text(html_page(health), encoding="utf-8")
            typer.echo(f"report: {page}", err=True)
    raise typer.Exit(EXIT[overall])


@index_app.command("adopt")
def adopt(
    name: Annotated[str, typer.Argument(help="A collection under indexes.collections.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace another model recorded in the metadata.")
    ] = False,
) -> None:
    """Record the collection's embedding model and dimension in its metadata (after checking
    its vectors' size against the model's, measured through the gateway)."""
    from gateway.indexes.adopt import AdoptionRefused
    from gateway.indexes.adopt import adopt as record
    from gateway.indexes.engine import Unavailable, open_collection, place_of
    from gateway.indexes.prepare import model_names

    found = project()
    settings = found.settings
    config = _config(settings)
    (collection,) = _chosen(config, name)
    model_id, _ = model_names(config, collection.model)

    async def probe() -> int:
        async with _gateway(settings) as state:
            (vector,) = await _embedder(state)(collection.model, ["dimension probe"])
        return len(vector)

    dimension = asyncio.run(probe())
    place = place_of(collection, settings.data_dir, settings.qdrant_url)
    try:
        opened = open_collection(place, name)
    except Unavailable as exc:
        fail(str(exc))
    try:
        entry = record(opened, model_id, collection.model, dimension, force)
    except AdoptionRefused as exc:
        fail(str(exc), 1)
    finally:
        opened.close()
    typer.echo(
        f"{name}: recorded {entry['model']} ({entry['dimension']} dimensions) in its metadata"
    )


@index_app.command("build-example")
def build_example(
    source: Annotated[
        list[Path] | None,
        typer.Option(help="Markdown files or folders (default: README.md and docs/*.md)."),
    ] = None,
    collection: Annotated[
        str, typer.Option(help="The collection to build (its entry in indexes.collections).")
    ] = "gateway-docs",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
) -> None:
    """Embed the project's docs, in sections, with the bundled model through the gateway's
    embeddings path into a local collection the default config monitors."""
    from gateway.cli.progress import step_progress
    from gateway.core.index_config import IndexCollection
    from gateway.indexes import example
    from gateway.indexes.engine import Unavailable, place_of
    from gateway.indexes.prepare import model_names

    found = project()
    settings = found.settings
    config = _config(settings)
    entry = next((c for c in config.indexes.collections if c.name == collection), None)
    if entry is None:
        entry = IndexCollection(name=collection, model="local/all-MiniLM-L6-v2")
        if not config.routes(entry.model):
            fail(
                f"{collection!r} is not under indexes.collections and the config does not serve "
                f"{entry.model}"
            )
    try:
        files = example.markdown_files(source) if source else example.documents(found.root)
        chunks = example.chunks(files, found.root)
    except example.ExampleError as exc:
        fail(str(exc))
    if not chunks:
        fail("the documents hold no text to embed")
    model_id, _ = model_names(config, entry.model)
    corpus = example.digest(chunks, model_id)
    place = place_of(entry, settings.data_dir, settings.qdrant_url)
    try:
        built = example.built_digest(place, collection)
    except (example.ExampleError, Unavailable) as exc:
        fail(str(exc))
    if built == corpus and not force:
        typer.echo(f"{collection}: up to date ({plural(len(chunks), 'chunk')}, {place.where})")
        return
    started = time.perf_counter()

    async def embed_all() -> list[list[float]]:
        vectors: list[list[float]] = []
        batches = range(0, len(chunks), BATCH)
        async with _gateway(settings) as state:
            embed = _embedder(state)
            label = f"embedding {plural(len(chunks), 'chunk')} with {entry.model}"
            with step_progress(label, len(batches)) as step:
                for start in batches:
                    vectors += await embed(
                        entry.model, [c.text for c in chunks[start : start + BATCH]]
                    )
                    step(f"{min(start + BATCH, len(chunks))}/{len(chunks)}")
        return vectors

    vectors = asyncio.run(embed_all())
    try:
        example.write(place, collection, chunks, vectors, model_id, entry.model, corpus)
    except Unavailable as exc:
        fail(str(exc))
    typer.echo(
        f"{collection}: {plural(len(chunks), 'chunk')} of {plural(len(files), 'document')} "
        f"embedded by {entry.model} into {place.where} ({time.perf_counter() - started:.1f} s)"
    )

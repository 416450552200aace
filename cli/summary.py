"""``recsys summary``: what is in the data root (lake, incoming, dead letters, releases)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import typer

from common.domains import writable_domains
from common.lake import event_partitions, lake_domains
from common.paths import DataPaths
from common.registry import ArtifactRegistry


def _count_rows(root: Path) -> int:
    return ds.dataset(root, format="parquet").count_rows() if root.exists() else 0


def _count_lines(root: Path) -> int:
    total = 0
    for file in root.rglob("*.jsonl") if root.exists() else []:
        with file.open("rb") as fh:
            total += sum(1 for _ in fh)
    return total


def current_releases(domains: list[str] | None = None) -> dict[str, str | None]:
    """The live release (``CURRENT``) of each served domain (default: every writable one); None: none yet."""
    registry = ArtifactRegistry()
    return {domain: registry.current(domain) for domain in domains or writable_domains()}


def summarize(paths: DataPaths) -> list[str]:
    """One line per domain plus totals, in words a person reads at a glance."""
    lines = [f"data root: {paths.root}"]
    for domain in lake_domains(paths):
        dates = list(event_partitions(paths, domain))
        events = _count_rows(paths.events / f"domain={domain}")
        items = _count_rows(paths.catalog(domain))
        users = _count_rows(paths.users(domain))
        incoming = _count_lines(paths.incoming(domain))
        lines.append(
            f"  {domain:<10} events {events:>10,}  users {users:>8,}  items {items:>7,}  "
            f"days {len(dates):>3} ({dates[0] if dates else '-'} .. {dates[-1] if dates else '-'})  "
            f"incoming {incoming:,}"
        )
    dead = _count_lines(paths.root / "dead_letter")
    lines.append(f"  dead-letter records: {dead:,}")
    releases = ", ".join(f"{d} {v or 'none (serving answers from the popularity fallback)'}"
                         for d, v in current_releases().items())
    lines.append(f"  releases: {releases}")
    return lines


def summary(data_dir: Path = typer.Option(None, help="data root (default: ./data or $RECSYS_DATA_DIR)")) -> None:
    """Print what the data root holds."""
    paths = DataPaths(data_dir.resolve()) if data_dir else DataPaths.default()
    for line in summarize(paths):
        typer.echo(line)

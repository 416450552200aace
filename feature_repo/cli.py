"""``recsys features ...``: register the Feast definitions, materialize, read the online store."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import numpy as np
import orjson
import typer

from common.paths import DataPaths

app = typer.Typer(
    name="features",
    help="Feast feature store: register definitions, materialize offline -> online, read online features.",
    no_args_is_help=True,
    add_completion=False,
)

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]


class Online(StrEnum):
    sqlite = "sqlite"
    redis = "redis"


ONLINE = typer.Option(Online.sqlite, "--online", help="Online store: sqlite (local default) or redis.")
REDIS_URL = typer.Option(
    None, "--redis-url", help="Redis host:port (default: $RECSYS_REDIS_URL, else 127.0.0.1:6379)."
)


def _store(online: Online, redis_url: str | None):
    from feature_repo.store import get_store

    return get_store(DataPaths.default(), online.value, redis_url)


@app.command()
def apply(online: Online = ONLINE, redis_url: str | None = REDIS_URL) -> None:
    """Register entities, sources, views and services (over $RECSYS_DATA_DIR) and create online tables."""
    from feature_repo.store import apply as apply_definitions

    definitions = apply_definitions(_store(online, redis_url), DataPaths.default())
    typer.echo(
        f"applied {len(definitions.feature_views)} feature views, {len(definitions.on_demand_views)} "
        f"on-demand view(s), {len(definitions.services)} feature services ({online.value} online store)"
    )


@app.command()
def materialize(
    start: datetime = typer.Option(
        ..., formats=DATE_FORMATS, help="Window start (UTC unless an offset is given)."
    ),
    end: datetime = typer.Option(..., formats=DATE_FORMATS, help="Window end (inclusive)."),
    view: list[str] = typer.Option(None, "--view", help="Only these views (repeatable); default all."),
    online: Online = ONLINE,
    redis_url: str | None = REDIS_URL,
) -> None:
    """Load the latest row per entity with START <= event_timestamp <= END into the online store."""
    from feature_repo.store import materialize as run

    run(_store(online, redis_url), start, end, view or None)


@app.command("materialize-incremental")
def materialize_incremental(
    end: datetime = typer.Option(
        ..., formats=DATE_FORMATS, help="Materialize up to here (the run's logical date)."
    ),
    online: Online = ONLINE,
    redis_url: str | None = REDIS_URL,
) -> None:
    """Materialize every view from where its last run ended (first run: end - ttl) up to END."""
    from feature_repo.store import materialize_incremental as run

    windows = run(_store(online, redis_url), end)
    for name, (start, stop) in windows.items():
        typer.echo(f"{name}: {start.isoformat()} -> {stop.isoformat()}")
    if not windows:
        typer.echo(f"every view is already materialized up to {end.isoformat()}")


@app.command("online-read")
def online_read(
    user_id: str | None = typer.Option(None, "--user-id", help="Print this user's features."),
    item_id: list[str] = typer.Option(None, "--item-id", help="Print these items' features (repeatable)."),
    online: Online = ONLINE,
    redis_url: str | None = REDIS_URL,
) -> None:
    """Print online features as JSON, as serving reads them (defaults where missing, plus found flags)."""
    from common.online_features import OnlineFeatures

    if not user_id and not item_id:
        raise typer.BadParameter("give --user-id and/or --item-id")
    reader = OnlineFeatures(_store(online, redis_url))
    out: dict[str, object] = {}
    if user_id:
        user = reader.user_features(user_id)
        out["user"] = {"user_id": user.user_id, "found": user.found, "features": user.values}
    if item_id:
        items = reader.item_features(item_id)
        columns = {n: c.tolist() if isinstance(c, np.ndarray) else c for n, c in items.columns.items()}
        found = {name: mask.tolist() for name, mask in items.found.items()}
        out["items"] = {"item_ids": items.item_ids, "found": found, "features": columns}
    typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())

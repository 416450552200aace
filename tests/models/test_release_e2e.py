"""A release built end to end on tiny data: launchers under the local Spark session, index check,
ranker parity, evaluation, finalize -- then it verifies and loads back with parity.

The world: 3 product lines x 10 items, 12 users; user ``u`` only touches line ``u % 3``. Days
03-01..03-09 a user views item ``(day + u) % 7`` of its line (a click on even days); on 03-10 (the
held-out day) it views items 7 and 8 of its line, which it has never seen.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from common.domains import domain as domain_config
from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from common.registry import ArtifactRegistry
from models.retrieval.data import implicit_interactions

LINES = ("Shoes>Running", "Bags>Leather", "Hats>Wool")
OLD = datetime(2025, 1, 1, tzinfo=UTC)
USERS = [f"r_u{u:02d}" for u in range(12)]


def _item(line: int, n: int) -> str:
    return f"r_i{line}{n}"


def _events() -> pd.DataFrame:
    rows = []
    for u, user in enumerate(USERS):
        line = u % 3
        for day in range(9):
            when = datetime(2025, 3, 1 + day, 9 + u % 8, tzinfo=UTC)
            item = _item(line, (day + u) % 7)
            rows.append((user, item, "view", when))
            if day % 2 == 0:
                rows.append((user, item, "click", when + timedelta(minutes=1)))
        rows += [(user, _item(line, n), "view", datetime(2025, 3, 10, 10, n, tzinfo=UTC)) for n in (7, 8)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    return frame.assign(event_id=[f"e{i}" for i in range(len(frame))], domain="retail", session_id="s", device="web")


def _ranking_set(rng: np.random.Generator) -> pd.DataFrame:
    n = 480
    frame = pd.DataFrame({
        "request_id": np.repeat([f"q{i}" for i in range(n // 10)], 10), "user_id": rng.choice(USERS, n),
        "item_id": [_item(rng.integers(3), rng.integers(10)) for _ in range(n)],
        "event_timestamp": pd.Timestamp("2025-03-03", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 7, n)), "D"),
        "position": np.tile(np.arange(1, 11), n // 10), "price": rng.uniform(5, 100, n),
        "margin": rng.choice([0.1, 0.4], n), "x_cat_views": rng.integers(0, 4, n).astype(float),
        "hour_of_day": rng.integers(0, 24, n), "category_l1": rng.choice(["Shoes", "Bags", "Hats"], n),
        "device_type": rng.choice(["web", "ios"], n), "converted": 0,
    })
    p = (0.1 + 0.2 * frame["x_cat_views"]) / frame["position"] ** 0.5
    return frame.assign(clicked=(rng.random(n) < p).astype(int))


def write_world(paths: DataPaths) -> pd.DataFrame:
    """Lake (events, catalog, users) + the two training sets the Spark job would have written."""
    catalog = pd.DataFrame([
        {"item_id": _item(line, n), "domain": "retail", "title": f"{LINES[line]} {n}", "description": LINES[line],
         "category": LINES[line], "price": 10.0 + 5 * n, "margin": 0.2, "inventory": 5, "launched_at": OLD}
        for line in range(3) for n in range(10)])
    users = pd.DataFrame({"user_id": USERS, "domain": "retail", "signed_up_at": OLD,
                          "country": ["DE", "FR"] * 6, "age_band": "25-34"})
    events = _events()
    write_events(events, paths)
    write_catalog(catalog, paths, "retail")
    write_users(users, paths, "retail")
    retrieval = implicit_interactions(events, "retail").assign(domain="retail", event_id=events["event_id"])
    for name, frame in (("retrieval", retrieval), ("ranking", _ranking_set(np.random.default_rng(0)))):
        target = paths.training("retail", name)
        target.mkdir(parents=True)
        frame.to_parquet(target / "part-0.parquet", index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    return retrieval


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory: pytest.TempPathFactory):
    import os

    root = tmp_path_factory.mktemp("release")
    paths = DataPaths(root / "data")
    os.environ["RECSYS_ARTIFACTS_DIR"] = str(root / "artifacts")
    from orchestration.build import build_release

    try:
        interactions = write_world(paths)
        result = build_release("retail", date(2025, 3, 10), days=7, holdout_days=1, version="v1", paths=paths,
                               master="local[2]", retrieval_args=["--epochs", "1", "--quiet"],
                               ranker_args=["--epochs", "1", "--quiet"])
        yield result, ArtifactRegistry(root / "artifacts"), interactions
    finally:
        os.environ.pop("RECSYS_ARTIFACTS_DIR", None)


def test_release_verifies_with_window_and_metrics(built) -> None:
    result, registry, interactions = built
    assert registry.verify("retail", "v1").ok
    assert registry.current("retail") is None  # finalized, never promoted here
    manifest = result.manifest
    assert manifest.training_window == ("2025-03-03", "2025-03-09")
    times = interactions["timestamp"]
    in_window = int(((times >= "2025-03-03") & (times < "2025-03-10")).sum())
    assert manifest.extra["summaries"]["retrieval"]["interactions"] == in_window
    assert in_window == 12 * 7 + 12 * 4  # a view every day, a click on days 03-03, -05, -07, -09
    metrics = manifest.metrics
    assert metrics["collaborative_recall@100"] == 1.0 and metrics["content_recall@100"] == 1.0  # brute force
    assert metrics["eval_users"] == metrics["held_out_users"] == 12  # all have two unseen items on the held-out day
    assert 0.0 <= metrics["recall@100"] <= 1.0 and 0.0 <= metrics["ranker_auc"] <= 1.0
    assert metrics["recall@100"] == 1.0  # a 30-item catalog: k is capped at the unseen items, all in the union
    ranking_data = manifest.extra["summaries"]["ranker"]["ranking_data"]  # a name, or figures with their source
    assert (ranking_data if isinstance(ranking_data, str) else ranking_data["source"]) == "impressions"


def test_the_evaluation_judges_each_retriever_and_the_ranked_order(built) -> None:
    """On the same held-out users: NDCG@10 of each retriever alone and of the ranker's order of the merged
    candidates; the best retriever is named. The world has no offline feature sources: every feature
    the ranker reads gets serving's defaults, the cross features come from the lake's interactions."""
    result, _, _ = built
    metrics = result.manifest.metrics
    evaluation = result.manifest.extra["summaries"]["evaluation"]
    retrievers = {name: metrics[f"{name}_ndcg@10"] for name in ("collaborative", "content", "popularity")}
    assert all(0.0 <= value <= 1.0 for value in retrievers.values())
    assert evaluation["best_retriever"] == max(retrievers, key=retrievers.get)
    assert metrics["best_retriever_ndcg@10"] == max(retrievers.values())
    assert 0.0 <= metrics["ranked_ndcg@10"] <= 1.0
    assert metrics["order_eval_users"] == metrics["eval_users"] == 12
    assert metrics["ndcg@10"] == pytest.approx(retrievers["collaborative"])  # the sample is every user here
    assert evaluation["ranker_features_without_source"] == []
    print({**retrievers, "ranked": metrics["ranked_ndcg@10"]})


def test_the_orders_are_judged_on_a_seeded_sample_of_the_held_out_users(built, tmp_path) -> None:
    from common.registry import CATALOG_FILE, RANKER_DIR, RETRIEVAL_DIR
    from models.evaluation.release_evaluation import evaluate_release

    _, registry, interactions = built
    release = registry.release_path("retail", "v1")
    for name in (RETRIEVAL_DIR, RANKER_DIR, CATALOG_FILE):  # a view: a finalized release is never written to
        (tmp_path / name).symlink_to(release / name)
    holdout = (pd.Timestamp("2025-03-10", tz="UTC"), pd.Timestamp("2025-03-11", tz="UTC"))
    paths = DataPaths(registry.root.parent / "data")
    runs = [evaluate_release(tmp_path, interactions.assign(domain="retail"), *holdout, paths=paths, order_users=5)
            for _ in range(2)]
    assert runs[0] == runs[1]  # the sample is seeded
    assert runs[0]["eval_users"] == 12 and runs[0]["order_eval_users"] == 5
    assert registry.verify("retail", "v1").ok


def test_the_nightly_evaluation_reads_a_seeded_sample_of_held_out_users_with_their_whole_history(built) -> None:
    from models.evaluation.lake_samples import evaluation_interactions

    _, registry, interactions = built
    paths = DataPaths(registry.root.parent / "data")
    holdout = (pd.Timestamp("2025-03-10", tz="UTC"), pd.Timestamp("2025-03-11", tz="UTC"))
    sample = evaluation_interactions(paths, "retail", *holdout, users=5)
    assert sample.attrs["held_out_users"] == 12 and sample["user_id"].nunique() == 5
    assert evaluation_interactions(paths, "retail", *holdout, users=5)["user_id"].unique().tolist() == \
        sample["user_id"].unique().tolist()  # seeded
    mine = interactions[interactions["user_id"].isin(set(sample["user_id"]))]
    assert len(sample) == len(mine)  # every interaction of theirs up to the holdout's end, nobody else's
    assert sample["timestamp"].max() < holdout[1]


def test_the_index_check_queries_come_from_a_sample_of_recent_users(built) -> None:
    from models.evaluation.lake_samples import index_check_histories
    from models.retrieval.data import latest_histories

    _, registry, interactions = built
    paths = DataPaths(registry.root.parent / "data")
    end = pd.Timestamp("2025-03-10", tz="UTC")
    histories = index_check_histories(paths, "retail", end, users=4)
    assert len(histories) == 4
    everyone = latest_histories(interactions[pd.to_datetime(interactions["timestamp"], utc=True) < end])
    assert histories == {user: everyone[user] for user in histories}
    assert index_check_histories(paths, "retail", pd.Timestamp("2025-01-01", tz="UTC")) == {}  # nobody active yet


def test_batched_candidate_search_equals_one_query_at_a_time(built) -> None:
    from common.registry import RETRIEVAL_DIR
    from models.retrieval.candidates import batched_search
    from models.retrieval.export import load_retrievers

    _, registry, _ = built
    retrievers = load_retrievers(registry.release_path("retail", "v1") / RETRIEVAL_DIR)
    index = retrievers.collaborative_index
    queries = np.stack([retrievers.query_embedding(f"r_u{n:02d}", None, []) for n in range(7)])
    wanted = np.array([3, 30, 5, 1, 12, 30, 7])
    found = batched_search(index, queries, wanted, batch=3)
    for row, (ids, scores) in enumerate(found):
        one_ids, one_scores = index.search_one(queries[row], int(wanted[row]))
        assert ids == one_ids and np.allclose(scores, one_scores)


def test_release_loads_back_with_parity(built) -> None:
    from common.registry import RANKER_DIR, RETRIEVAL_DIR
    from models.ranking.data import feature_arrays
    from models.ranking.export import load_scorer
    from models.ranking.scoring import compare_scores
    from models.retrieval.export import load_retrievers
    from models.retrieval.index import exact_search

    _, registry, _ = built
    release = registry.release_path("retail", "v1")
    retrievers = load_retrievers(release / RETRIEVAL_DIR)
    embeddings = np.load(release / RETRIEVAL_DIR / "collaborative" / "item_embeddings.npy")
    for history in ([], ["r_i00", "r_i01"]):  # the index (ScaNN) returns the exact top-5 minus the history
        query = retrievers.query_embedding("r_u00", {"country": "DE"}, history)
        ids, _ = retrievers.collaborative("r_u00", {"country": "DE"}, history, k=5)
        rows, _ = exact_search(embeddings, query[None, :], 5 + len(history))
        assert ids == [i for i in retrievers.collaborative_index.ids[rows[0]] if i not in history][:5]
    assert len(retrievers.popular("DE", 10)[0]) == 10
    saved, fast = load_scorer(release / RANKER_DIR, "saved_model"), load_scorer(release / RANKER_DIR, "fast")
    assert "position" not in saved.input_names
    probe = feature_arrays(_ranking_set(np.random.default_rng(1)).head(200), saved.config)
    parity = compare_scores(saved.score(probe), fast.score(probe))
    assert parity["agree"] and parity["max_abs_diff"] <= 1e-4


def test_failed_build_leaves_no_release(built, spark) -> None:
    from orchestration.build import build_release

    _, registry, _ = built
    paths = DataPaths(registry.root.parent / "data")
    with pytest.raises(ValueError, match="no positive interaction"):
        build_release("retail", date(2024, 1, 10), days=3, version="v-empty", paths=paths, master="local[2]")
    assert not registry.staging_path("retail", "v-empty").exists()
    assert not registry.release_path("retail", "v-empty").exists()
    assert domain_config("retail").positive_events  # the window was empty, not the config

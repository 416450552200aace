"""evaluate_recommender and merged_recall on a hand-computed case; run_baselines + report on a tiny timed world."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluation.baselines import EASERecommender
from models.evaluation.data import DomainData
from models.evaluation.evaluate import evaluate_recommender, merged_recall, run_baselines
from models.evaluation.report import write_report
from models.evaluation.split import build_ground_truth

T0 = pd.Timestamp("2024-01-01", tz="UTC")
COLUMNS = ["user_id", "item_id", "timestamp", "event_type", "weight"]


def interactions(rows: list[tuple[str, str, float, str, float]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["timestamp"] = T0 + pd.to_timedelta(out["timestamp"], unit="D")
    return out


# Catalog a..d under a shared root "S" (dropped from the diversity features as uninformative).
CATALOG = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "category": ["S>x", "S>y", "S>y", "S>y>w"]})
# Training popularity by weight: c 4, a 2, b 1, d 0 ; users per item: a 2, b 1, c 1, d 0 (3 users).
TRAIN = interactions([("u1", "a", 0, "view", 1.0), ("u2", "a", 0, "view", 1.0), ("u2", "b", 0, "view", 1.0),
                      ("u3", "c", 0, "purchase", 4.0)])
# Held out: u1 buys d (grade 1 + 4 = 5) and views b (grade 1, not relevant); u2 buys d.
TEST = interactions([("u1", "d", 9, "view", 1.0), ("u1", "d", 9, "purchase", 4.0), ("u1", "b", 9, "view", 1.0),
                     ("u2", "d", 9, "view", 1.0), ("u2", "d", 9, "purchase", 4.0)])
TRUTH = build_ground_truth(TEST, TRAIN, CATALOG, positive_events=("purchase",))


def test_evaluate_recommender_by_hand() -> None:
    recs = np.array([["b", "d"], ["d", "c"]], dtype=object)
    result = evaluate_recommender(recs, TRUTH, TRAIN, CATALOG, ks=(2,))
    assert result["users"] == 2
    assert result["recall@2"] == 1.0 and result["hit_rate@2"] == 1.0
    # binary NDCG: u1 hit at rank 2 -> (1/log2 3) / 1 = 0.630930 ; u2 rank 1 -> 1 ; mean 0.815465
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    # graded: u1 gains [1, 5]: DCG = 1 + 5/log2 3 = 4.154649 ; IDCG = 5 + 1/log2 3 = 5.630930 -> 0.737827
    assert result["ndcg_graded@2"] == pytest.approx(((1 + 5 / math.log2(3)) / (5 + 1 / math.log2(3)) + 1) / 2)
    # MAP: u1 P@2 / min(1, 2) = 1/2 ; u2 1 -> 3/4
    assert result["map@2"] == pytest.approx(0.75)
    # coverage: {b, c, d} of 4
    assert result["coverage@2"] == pytest.approx(0.75)
    # novelty: -log2((n_i + 1)/4): b 1, c 1, d 2 bits -> (1 + 2 + 2 + 1) / 4 = 1.5
    assert result["novelty@2"] == pytest.approx(1.5)
    # popularity lists without seen items: u1 [c, b], u2 [c, d]; u1's d is relevant and unexpected -> 1/2,
    # u2's d is expected -> 0 ; mean 1/4
    assert result["serendipity@2"] == pytest.approx(0.25)
    # features (root S dropped): b {S>y}, c {S>y}, d {S>y, S>y>w}: cos(d, b) = cos(d, c) = 1/sqrt 2
    assert result["ild@2"] == pytest.approx(1 - 1 / math.sqrt(2))
    # popularity share: b 1/3, c 1/3, d 0 -> each user (1/3 + 0)/2 = 1/6
    assert result["arp@2"] == pytest.approx(1 / 6)
    # exposure a 0, b 1, c 1, d 2: sorted [0,1,1,2], weights -3,-1,1,3 -> 6 / (4 * 4) = 0.375
    assert result["gini@2"] == pytest.approx(0.375)
    with pytest.raises(ValueError):
        evaluate_recommender(recs[:1], TRUTH, TRAIN, CATALOG, ks=(2,))


def test_merged_recall_counts_each_item_once() -> None:
    truth = build_ground_truth(
        interactions([("u1", "a", 1, "purchase", 4.0), ("u1", "b", 1, "purchase", 4.0), ("u2", "c", 1, "purchase", 4.0)]),
        interactions([]), CATALOG, positive_events=("purchase",))
    first = np.array([["a", "c"], ["d", "b"]], dtype=object)
    second = np.array([["c", "a"], ["c", "a"]], dtype=object)
    # k=2: u1 union {a, c} -> 1 of 2 relevant ; u2 union {d, b, c, a} -> 1 of 1 ; mean 3/4
    assert merged_recall({"cf": first, "content": second}, truth, 2) == pytest.approx(0.75)
    # k=1: u1 {a} -> 1/2 ; u2 {d, c} -> 1 ; mean 3/4 ; a single retriever alone: u1 1/2, u2 0 -> 1/4
    assert merged_recall({"cf": first, "content": second}, truth, 1) == pytest.approx(0.75)
    assert merged_recall({"cf": first}, truth, 1) == pytest.approx(0.25)


def timed_world(seed: int = 3) -> DomainData:
    """Two clusters liked by two countries; history on days 0-60, validation 70-79, test 80-100;
    8 users arrive in the test period; items n0, n1 launch on day 85."""
    rng = np.random.default_rng(seed)
    clusters = {"X": [f"r_a{i}" for i in range(8)], "Y": [f"r_b{i}" for i in range(8)]}
    skew = np.arange(8, 0, -1) / 36
    rows, users = [], []
    for country, items in clusters.items():
        for n in range(20):
            user = f"r_{country}{n}"
            picked = [items[i] for i in rng.choice(8, size=6, replace=False, p=skew)]
            rows += [(user, item, rng.uniform(0, 60), "view", 1.0) for item in picked[:3]]
            rows += [(user, picked[3], 75.0, "view", 1.0), (user, picked[3], 75.0, "purchase", 4.0)]
            rows += [(user, item, rng.uniform(81, 99), "purchase", 4.0) for item in picked[4:]]
            if n % 4 == 0:
                rows.append((user, f"r_n{n % 8 // 4}", 90.0, "purchase", 4.0))
            users.append((user, country, "25-34"))
        for n in range(4):
            user = f"r_new{country}{n}"
            rows += [(user, items[i], 95.0, "purchase", 4.0) for i in range(2)]
            users.append((user, country, "25-34"))
    rows.append(("r_X0", "r_a0", 100.0, "view", 1.0))  # the last event: test period ends on day 100
    fillers = [f"r_f{i}" for i in range(30)]
    catalog = pd.DataFrame({"item_id": [*clusters["X"], *clusters["Y"], "r_n0", "r_n1", *fillers]})
    catalog["category"] = "Shop>" + catalog["item_id"].str[2]
    catalog["launched_at"] = [T0] * 16 + [T0 + pd.Timedelta(days=85)] * 2 + [T0] * len(fillers)
    frame = interactions(rows)
    return DomainData("retail", frame, catalog, pd.DataFrame(users, columns=["user_id", "country", "age_band"]))


def test_run_baselines_table_slices_and_report(tmp_path: Path) -> None:
    data = timed_world()
    table = run_baselines(data, ks=(2, 5))
    assert table.attrs["test_start"].startswith("2024-03-21")  # day 80
    assert list(dict.fromkeys(table["model"])) == ["random", "popularity", "segment_popularity", "ease", "als"]
    assert table.groupby("model").size().eq(4).all()
    by = table.set_index(["model", "slice"])
    # every one of the 40 + 8 users has a purchase in the test period that was not seen before
    assert by.loc[("popularity", "all"), "users"] == 48
    assert by.loc[("popularity", "cold_users"), "users"] == 8  # the newcomers: no training events
    assert by.loc[("popularity", "cold_items"), "users"] == 10  # every 4th of the 40 bought n0/n1
    assert by.loc[("popularity", "cold_items"), "recall@5"] == 0.0  # never seen, never popular
    for model in ("popularity", "segment_popularity", "ease", "als"):
        assert by.loc[(model, "warm_users"), "recall@5"] > by.loc[("random", "warm_users"), "recall@5"] + 0.1
    assert by.loc[("ease", "warm_users"), "recall@5"] > by.loc[("popularity", "warm_users"), "recall@5"]
    assert eval(by.loc[("ease", "all"), "params"])["l2"] in EASERecommender.search_space["l2"]
    assert (table[["tune_s", "fit_s", "recommend_s"]] >= 0).all().all()

    paths = write_report(table, tmp_path / "report", title="Tiny")
    assert {p.name for p in paths} == {"results.md", "results.csv", "accuracy.png", "coverage_novelty.png",
                                       "popularity_bias.png"}
    markdown = (tmp_path / "report" / "results.md").read_text()
    assert markdown.startswith("# Tiny") and "| model | users | recall@2 | ndcg@2 | recall@5 |" in markdown
    assert "## Slice `cold_items`" in markdown
    for png in paths[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(tmp_path / "report" / "results.csv")) == 20

"""``recsys eval baselines`` end to end on a tiny retail lake (contract events, catalog, users)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from common.lake import write_catalog, write_events, write_users
from common.paths import DataPaths
from models.evaluation.cli import app

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def write_tiny_retail_lake(paths: DataPaths) -> None:
    """20 users who view 3 items of their country's cluster before day 60, buy one on day 75 (validation)
    and two more between days 81 and 99 (test); impressions are not interactions and are ignored."""
    rng = np.random.default_rng(0)
    clusters = {"DE": [f"r_a{i}" for i in range(6)], "FR": [f"r_b{i}" for i in range(6)]}
    rows, users = [], []
    for country, items in clusters.items():
        for n in range(10):
            user = f"r_{country}{n}"
            picked = [items[i] for i in rng.permutation(6)]
            days = [*rng.uniform(0, 60, 3), 75.0, *rng.uniform(81, 99, 2)]
            kinds = ["view"] * 3 + ["purchase"] * 3
            rows += [(user, item, day, kind) for item, day, kind in zip(picked, days, kinds, strict=True)]
            rows.append((user, picked[0], 1.0, "impression"))
            users.append({"user_id": user, "domain": "retail", "signed_up_at": T0, "country": country, "age_band": "25-34"})
    rows.append(("r_DE0", "r_a0", 100.0, "view"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "day", "event_type"])
    events["timestamp"] = (T0 + pd.to_timedelta(events.pop("day"), unit="D")).dt.floor("s")
    events["event_id"] = [f"e{i}" for i in range(len(events))]
    events["domain"] = "retail"
    events["request_id"] = "req"
    events["position"] = 1
    write_events(events, paths)
    item_ids = [*clusters["DE"], *clusters["FR"], *(f"r_f{i}" for i in range(8))]
    write_catalog(pd.DataFrame({"item_id": item_ids, "domain": "retail", "title": item_ids, "description": "",
                                "category": [f"Shop>{i[2]}" for i in item_ids], "price": 1.0, "margin": 0.1,
                                "inventory": 5, "launched_at": T0}), paths, "retail")
    write_users(pd.DataFrame(users), paths, "retail")


def test_baselines_command_reads_the_lake_and_writes_the_report(data_paths: DataPaths, tmp_path: Path) -> None:
    write_tiny_retail_lake(data_paths)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["baselines", "--domain", "retail", "--out", str(out), "--k", "2", "--k", "5",
                                      "--model", "popularity", "--model", "segment_popularity", "--no-tune"])
    assert result.exit_code == 0, result.output
    assert "split: train < 2024-03-21" in result.output  # day 80 of 100
    table = pd.read_csv(out / "results.csv")
    assert set(table["model"]) == {"popularity", "segment_popularity"}
    users = table.set_index(["model", "slice"])["users"]
    assert users[("popularity", "all")] == 20  # impressions never count as interactions or positives
    segment = table.set_index(["model", "slice"]).loc[("segment_popularity", "all")]
    popular = table.set_index(["model", "slice"]).loc[("popularity", "all")]
    assert segment["recall@5"] > popular["recall@5"]  # the country segments match the planted clusters
    assert (out / "results.md").exists()


def test_unknown_model_is_refused(data_paths: DataPaths) -> None:
    result = CliRunner().invoke(app, ["baselines", "--domain", "retail", "--model", "nope"])
    assert result.exit_code != 0
    assert "unknown baselines" in result.output

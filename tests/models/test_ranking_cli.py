"""``recsys ranker``: train + export from a Parquet training set, then check the exports agree."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from models.ranking.cli import app
from models.ranking.synthetic import log_impressions, make_world

runner = CliRunner()


def test_train_then_check_round_trip(tmp_path):
    world = make_world(80, n_numeric=4, n_categorical=2, seed=11)
    data = tmp_path / "impressions.parquet"
    log_impressions(world, 200, seed=12).to_parquet(data)
    out = tmp_path / "ranker"
    result = runner.invoke(app, [
        "train", "--train", str(data), "--out", str(out), "--structure", "stacked", "--epochs", "1",
        "--numeric", ",".join(world.numeric), "--categorical", ",".join(world.categorical),
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{\n"):])
    assert summary["structure"] == "stacked" and set(summary["exports"]) == {"saved_model", "fast"}
    assert "1800 training rows, 200 validation rows" in result.output  # 20 of the 200 requests held out

    result = runner.invoke(app, ["check", "--export", str(out), "--data", str(data), "--rows", "300"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["top10_identical"] is True


def test_commands_have_help():
    for command in ([], ["train"], ["check"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output

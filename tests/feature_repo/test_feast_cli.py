"""The ``features`` Typer sub-app end to end over RECSYS_DATA_DIR, and the benchmark on tiny data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from feature_repo.cli import app


def test_cli_apply_materialize_and_read(offline, monkeypatch):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(offline.paths.root))  # the CLI follows the environment
    runner = CliRunner()
    assert "materialize-incremental" in runner.invoke(app, ["--help"]).output

    applied = runner.invoke(app, ["apply"])
    assert applied.exit_code == 0, applied.output
    assert "applied 5 feature views, 1 on-demand view(s), 2 feature services" in applied.output
    end = datetime.combine(offline.day1.date(), datetime.min.time(), UTC) + timedelta(hours=12)
    result = runner.invoke(app, ["materialize-incremental", "--end", end.strftime("%Y-%m-%dT%H:%M:%S")])
    assert result.exit_code == 0, result.output
    assert f"user_profile: {(end - timedelta(days=90)).isoformat()} -> {end.isoformat()}" in result.output

    read = runner.invoke(
        app, ["online-read", "--user-id", "r_u1", "--item-id", "r_i1", "--item-id", "r_none"]
    )
    assert read.exit_code == 0, read.output
    out = json.loads(read.output)
    assert (
        out["user"]["features"]["lifetime_events"] == offline.old["user_profile"]["r_u1"]["lifetime_events"]
    )
    assert out["items"]["found"]["item_stats"] == [True, False]
    assert out["items"]["features"]["inventory"] == [offline.old["item_stats"]["r_i1"]["inventory"], 0]
    assert runner.invoke(app, ["online-read"]).exit_code != 0


def test_benchmark_runs_on_tiny_pipeline_output(offline):
    from benchmarks.feature_store import run

    figures = run(offline.paths, user_reads=4, item_reads=3, warmup=1)
    assert figures["data"] == "pipeline output"
    assert (figures["users"], figures["items"]) == (len(offline.users), len(offline.items))
    for store in figures["stores"].values():
        assert 0 < store["user_features"]["p50_ms"] <= store["user_features"]["p99_ms"]
        assert 0 < store["item_features_500"]["p50_ms"] <= store["item_features_500"]["p99_ms"]

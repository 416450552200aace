"""A business's own data, end to end, exactly as the README's "Your own data" walkthrough tells a user.

The files are ``examples/own_data/`` (the last 90 days of MovieLens as a film shop's CSV files: views
and purchases, no impression log, no user profile). On an empty data root:

1. ``recsys domain add films ...`` declares the domain (no impressions; thin daily volume);
2. ``recsys data import ...`` validates and loads the three files;
3. the nightly DAG runs through Airflow for the lake's newest day over all history
   (``training_days: all``); the reference domains retail and banking have no data and are skipped;
4. serving starts (a real uvicorn process) and every user of the domain gets k valid recommendations
   over HTTP from the night's release.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.paths import REPO_ROOT, DataPaths
from common.registry import ArtifactRegistry
from orchestration.runner import RunReport

pytestmark = pytest.mark.slow

SAMPLE = REPO_ROOT / "examples" / "own_data"
DOMAIN = "films"
K = 10
DECLARE = ["domain", "add", DOMAIN, "--id-prefix", "f_", "--event-types", "view,purchase",
           "--positive", "view=1,purchase=4", "--conversion", "purchase", "--no-impressions",
           "--quality", "min_rows=1", "--quality", "max_staleness_hours=24", "--quality", "volume_lookback_days=0"]
IMPORT = ["data", "import", "--events", str(SAMPLE / "events.csv"), "--catalog", str(SAMPLE / "catalog.csv"),
          "--users", str(SAMPLE / "users.csv")]


@dataclass(frozen=True)
class Night:
    root: Path
    paths: DataPaths
    registry: ArtifactRegistry
    report: RunReport
    env: dict[str, str]


def _rows(name: str) -> list[dict[str, str]]:
    with (SAMPLE / f"{name}.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def night(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Night]:
    from typer.testing import CliRunner

    from cli.main import app
    from orchestration.runner import latest_lake_day, run_dag

    root = tmp_path_factory.mktemp("own_data")
    domains_file = root / "domains.yaml"
    domains_file.write_text((REPO_ROOT / "config" / "domains.yaml").read_text())
    env = {"RECSYS_DATA_DIR": str(root / "data"), "RECSYS_ARTIFACTS_DIR": str(root / "artifacts"),
           "RECSYS_DOMAINS_FILE": str(domains_file)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        runner = CliRunner()
        for command in (DECLARE, IMPORT):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, result.output
            print(result.output)
        paths = DataPaths(root / "data")
        day = latest_lake_day(paths)
        report = run_dag("nightly_retrain", datetime(day.year, day.month, day.day, tzinfo=UTC),
                         conf={"training_days": "all"})
        print(report.table())
        yield Night(root, paths, ArtifactRegistry(root / "artifacts"), report, env)


def test_the_night_trains_and_publishes_the_declared_domain_and_skips_the_empty_ones(night: Night) -> None:
    states = {t.task_id: t.state for t in night.report.tasks}
    assert night.report.ok, night.report.table()
    assert states["films.publish"] == "success"
    for empty in ("retail", "banking"):
        assert states[f"data_quality.{empty}"] == "skipped"
        assert states[f"{empty}.publish"] == "skipped"
    version = night.registry.current(DOMAIN)
    manifest = night.registry.load_manifest(DOMAIN, version)
    ranker = manifest.extra["summaries"]["ranker"]
    assert ranker["ranking_data"]["source"] == "bootstrap", ranker  # no impression log: later interactions
    assert manifest.metrics["ranked_ndcg@10"] >= manifest.metrics["best_retriever_ndcg@10"]


def test_every_user_of_the_domain_gets_k_valid_recommendations_over_http(night: Night) -> None:
    from loop.service import running_service, write_variant
    from serving.pipeline import DEGRADED_PATHS

    items = {row["item_id"] for row in _rows("catalog")}
    users = sorted({row["user_id"] for row in _rows("users")})
    version = night.registry.current(DOMAIN)
    # budgets wide enough that a path is degraded by a fault, not by the test worker beside this one
    budgets = {"total": 20_000, "user_features": 4_000, "retrieval": 8_000, "item_features": 4_000, "ranking": 4_000}
    serving_file = write_variant(night.root / "serving.yaml", {}, {"budgets_ms": budgets})
    with running_service([DOMAIN], night.env, serving_file, log_file=night.root / "service.log") as client:
        client.wait_for_releases({DOMAIN: version}, timeout_s=120)
        for user in users:
            slate = client.recommend(user, DOMAIN, K, device="web", session_id=f"s-{user}")
            assert len(slate.item_ids) == K and len(set(slate.item_ids)) == K, (user, slate)
            assert set(slate.item_ids) <= items, user
            assert slate.release == version and slate.path not in DEGRADED_PATHS, slate

"""The closed loop end to end on the tiny world: a real uvicorn subprocess serves two simulated days,
the night between them (stream -> lake -> Spark -> release builder -> promote) hot-swaps new releases.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from common.lake import read_events
from common.paths import DataPaths
from common.schemas import validate_event
from loop.simulate import LoopSettings, event_records
from loop.study import StudyResult, StudySettings, base_marker, run_study
from orchestration.settings import DEFAULT_FILE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
DOMAINS = ("retail", "banking")


def _start_from(night: Path, settings: StudySettings) -> None:
    """The loop's base: a copy of the tiny world after its first nightly DAG run (releases of 2024-03-12;
    the world's last day, 2024-03-13, still waits in the stream and lands in the loop's first night)."""
    base = settings.work_dir / "base"
    for part in ("data", "artifacts"):
        shutil.copytree(night / part, base / part)
    base_marker(settings).write_text("ok\n")


@pytest.fixture(scope="module")
def study(shared_night, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StudyResult, StudySettings]]:  # noqa: ANN001
    """The loop starts from the nightly DAG's first night when this run built it
    (tests/dags/test_nightly_e2e.py), else from its own world and fast first night (``prepare_world``)."""
    work = tmp_path_factory.mktemp("loop")
    gate = yaml.safe_load(DEFAULT_FILE.read_text())
    for policy in (gate["gate"], *gate["gate"]["domains"].values()):
        # on the tiny world the ranked order does not beat popularity (NDCG@10 ~0.31 vs ~0.40) and a
        # night's metrics swing by more than 5%: the gate's refusals are tested in
        # tests/dags/test_nightly_e2e.py; here it must run and let the night's releases through
        for rule in policy["metrics"].values():
            rule["tolerance"] = 0.99  # any regression short of losing everything (1.0: the ranked check off)
        policy["metrics"]["ranked_vs_best_retriever"]["tolerance"] = 1.0
        policy["metrics"]["ranker_auc"].pop("minimum")
    (work / "nightly.yaml").write_text(yaml.safe_dump(gate))
    settings = StudySettings(loop=LoopSettings(profile="tiny", days=2, retrain="fast", training_days=7),
                             work_dir=work, report_dir=work / "reports", variants=("on",), ope=False)
    night = shared_night.wait()
    if night is not None:
        _start_from(night, settings)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECSYS_ORCHESTRATION_FILE", str(work / "nightly.yaml"))
        yield run_study(settings, say=print), settings


def test_the_users_events_validate_and_reach_the_lake(study: tuple[StudyResult, StudySettings]) -> None:
    result, settings = study
    run = result.runs["on"]
    for domain in DOMAINS:
        events = run.events[domain]
        assert set(events["day"]) == {"2024-03-14", "2024-03-15"}
        assert {"impression", "click"} <= set(events["event_type"])
        assert all(validate_event(r)[1] is None for r in event_records(events))
    for day in run.days:
        assert day.intake["rejected"] == 0 and day.intake["accepted"] > 0
    lake = read_events(DataPaths(settings.work_dir / "on" / "data"), "retail")
    first_day = run.events["retail"][run.events["retail"]["day"] == "2024-03-14"]
    posted = first_day[first_day["event_type"] != "impression"]
    assert set(posted["event_id"]) <= set(lake["event_id"])  # the night landed day 1 through the stream
    # the service logged day 1's impressions itself, at the simulated request times (trusted context.timestamp)
    logged = lake[(lake["event_type"] == "impression") & lake["request_id"].isin(set(first_day["request_id"]))]
    assert len(logged) == (first_day["event_type"] == "impression").sum()
    assert set(logged["timestamp"].dt.strftime("%Y-%m-%d")) == {"2024-03-14"}


def test_releases_change_between_days(study: tuple[StudyResult, StudySettings]) -> None:
    run = study[0].runs["on"]
    (night,) = run.nights
    assert night.ok and all(night.changed.values())
    for domain in DOMAINS:  # the fast night went through the DAG's gate, against the live release
        decision = night.gate[domain]
        assert decision["promote"] and decision["version"] == night.releases[domain]
        assert {c["metric"] for c in decision["comparisons"]} >= {"ndcg@10", "ranked_ndcg@10"}
    for domain in DOMAINS:
        by_day = {d.day: d.releases for d in run.days if d.domain == domain}
        assert by_day["2024-03-15"] == [night.releases[domain]] != by_day["2024-03-14"]


def test_the_ab_table_has_both_arms_with_intervals(study: tuple[StudyResult, StudySettings]) -> None:
    result, settings = study
    for domain, metric in (("retail", "aov"), ("banking", "approved_per_user")):
        report = result.ab[domain].overall
        assert {"control", "treatment"} <= set(report.arms), f"the service returned arms {set(report.arms)}"
        assert 0.0 <= report.srm.p_value <= 1.0
        (row,) = [r for r in report.comparisons if r["metric"] == metric]
        low, high = row["diff_ci"]
        assert low <= row["diff"] <= high and row["n_control"] > 0 and row["n_treatment"] > 0
        assert len(result.ab[domain].days) == 2
    saved = orjson.loads((settings.report_dir / "ab.json").read_bytes())
    assert set(saved) == set(DOMAINS)
    table = [line for line in (Path(settings.report_dir) / "ab.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| domain | metric | day | arm | control | arm value |")
    assert len(table) > 1 and all(line.split(" | ")[3] == "treatment" for line in table[1:])  # which arm each row is

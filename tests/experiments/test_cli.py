"""``recsys experiments``: help texts, the SRM check, off-policy evaluation on a lake, the job's argv."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from common.lake import write_events
from experiments.ab_metrics import main as ab_metrics_main
from experiments.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["ab-metrics"], ["srm"], ["ope"], ["dashboard"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_srm_command_flags_a_skewed_split() -> None:
    skewed = runner.invoke(app, ["srm", "-c", "control=52000", "-c", "treatment=48000", "--domain", "retail"])
    assert skewed.exit_code == 1 and "SAMPLE RATIO MISMATCH" in skewed.output and "chi2 = 160" in skewed.output
    even = runner.invoke(app, ["srm", "-c", "a=20010", "-c", "b=79990", "-s", "a=0.2", "-s", "b=0.8"])
    assert even.exit_code == 0 and ": ok" in even.output
    bad = runner.invoke(app, ["srm", "-c", "control"])
    assert bad.exit_code != 0


def test_ope_command_on_the_logged_exploration_slots(data_paths, lake_events: pd.DataFrame, tmp_path) -> None:
    """Randomised slots (position 3, propensity 0.5) of the 8 slates; clicked: q4/r_i6 and q5/r_i1."""
    write_events(lake_events, data_paths)
    target = tmp_path / "candidate.csv"
    pd.DataFrame({"request_id": ["q4", "q5"], "item_id": ["r_i6", "r_i1"], "target_propensity": [1.0, 0.5]}).to_csv(
        target, index=False)
    result = runner.invoke(app, ["ope", "--domain", "retail", "--target", str(target), "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert "8 exploration slots in 8 requests" in result.output
    # weights 2 and 1 on the two clicked slots, 0 elsewhere: IPS (2 + 1) / 8, SNIPS 3 / 3
    assert "ips    0.37500" in result.output and "snips  1.00000" in result.output
    later = runner.invoke(app, ["ope", "--domain", "retail", "--target", str(target), "--start", "2025-03-11"])
    assert "3 exploration slots in 3 requests" in later.output


def test_job_main_validates_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        ab_metrics_main(["--help"])
    assert help_exit.value.code == 0 and "--lookback-days" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        ab_metrics_main(["--start", "2025-13-01", "--end", "2025-03-11"])
    assert bad.value.code == 2

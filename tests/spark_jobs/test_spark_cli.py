"""The ``spark_jobs`` Typer sub-app: help texts, and a run through to the job's main."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spark_jobs.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["compact", "features", "training-sets"])
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--data-dir" in result.output and "--master" in result.output


def test_compact_an_empty_day(tiny_spark, data_paths):
    result = runner.invoke(app, ["compact", "--date", "2030-01-01", "--data-dir", str(data_paths.root)])
    assert result.exit_code == 0, result.output
    assert "[compact] done: 0 rows in, 0 written" in result.output


def test_bad_arguments_are_refused():
    assert runner.invoke(app, ["features", "--date", "2030-13-01"]).exit_code != 0
    assert runner.invoke(app, ["features", "--date", "2030-01-01", "--days", "0"]).exit_code != 0

"""The ``generate`` command."""

from __future__ import annotations

from typer.testing import CliRunner

from simulation.cli import app


def test_help_lists_the_options():
    result = CliRunner().invoke(app, ["generate", "--help"])
    assert result.exit_code == 0
    for option in ("--profile", "--seed", "--data-dir", "--start-date"):
        assert option in result.output


def test_generate_writes_a_world_and_prints_a_summary(tmp_path):
    result = CliRunner().invoke(app, ["generate", "--profile", "tiny", "--seed", "3", "--data-dir", str(tmp_path),
                                      "--start-date", "2024-06-01", "--domain", "banking", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "banking: 340 users" in result.output and "application_approved=" in result.output
    assert (tmp_path / "lake" / "catalog" / "domain=banking" / "catalog.parquet").exists()
    assert (tmp_path / "incoming" / "banking" / "events-2024-06-10.jsonl").exists()
    assert (tmp_path / "world" / "banking" / "truth.npz").exists()


def test_unknown_profile_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["generate", "--profile", "huge", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output  # a usage error, before anything is written
    assert "huge" in result.output and "tiny" in result.output  # names the bad profile and the known ones
    assert not any(tmp_path.iterdir())

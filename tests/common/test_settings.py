"""The platform's environment variables: one declaration (common/settings.py), checked, documented."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from common.paths import REPO_ROOT
from common.settings import PlatformEnv, env, markdown_table, variable

CODE_FOLDERS = ("beam_jobs", "benchmarks", "cli", "common", "dags", "experiments", "feature_repo", "ingest", "loop",
                "models", "orchestration", "serving", "simulation", "spark_jobs")
NAME = re.compile(r"(?<![A-Z_])RECSYS_[A-Z0-9_]*[A-Z0-9]")


def test_every_variable_the_code_names_is_declared() -> None:
    declared = {variable(name) for name in PlatformEnv.model_fields}
    named = {}
    for folder in CODE_FOLDERS:
        for source in (REPO_ROOT / folder).rglob("*.py"):
            for found in NAME.findall(source.read_text()):
                named.setdefault(found, str(source.relative_to(REPO_ROOT)))
    undeclared = {name: where for name, where in named.items() if name not in declared}
    assert not undeclared, f"declare these in common/settings.py: {undeclared}"


def test_the_readme_table_is_the_declaration() -> None:
    assert markdown_table() in (REPO_ROOT / "README.md").read_text(), \
        "README.md's table of variables differs from common.settings.markdown_table(): paste it again"


def test_values_are_read_as_they_are_now_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_TRAINER_WORKERS", "3")
    monkeypatch.setenv("RECSYS_ONLINE_STORE", "redis")
    assert (env().trainer_workers, env().online_store) == (3, "redis")
    monkeypatch.setenv("RECSYS_TRAINER_WORKERS", "")  # empty: unset
    assert env().trainer_workers == 1
    monkeypatch.setenv("RECSYS_TRAINER_WORKERS", "two")
    with pytest.raises(ValidationError, match="trainer_workers"):
        env()
    monkeypatch.setenv("RECSYS_TRAINER_WORKERS", "1")
    monkeypatch.setenv("RECSYS_ONLINE_STORE", "dynamo")
    with pytest.raises(ValidationError, match="online_store"):
        env()


def test_the_command_line_refuses_a_bad_value_before_any_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("RECSYS_SPARK_SHUFFLE_PARTITIONS", "0")
    result = CliRunner().invoke(app, ["domain", "list"])
    assert result.exit_code == 2 and "RECSYS_SPARK_SHUFFLE_PARTITIONS" in result.output

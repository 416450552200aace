"""The ingest Typer sub-app: --help everywhere, import report, release commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.paths import DataPaths
from common.registry import ArtifactRegistry
from ingest.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [[], ["movielens"], ["import"], ["releases"], ["releases", "list"], ["releases", "verify"],
     ["releases", "promote"], ["releases", "rollback"]],
)
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_import_prints_report(data_paths: DataPaths, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,domain,signed_up_at,products_held\nb_u1,banking,2025-01-01,b_card|b_loan\nb_u2,retail,2025-01-01,\n")
    result = runner.invoke(app, ["import", "--users", str(users), "--data-dir", str(data_paths.root)])
    assert result.exit_code == 0, result.output
    assert "read 2, accepted 1, rejected 1" in result.output and "rejected wrong_id_prefix: 1" in result.output
    assert "dead_letter" in result.output
    assert runner.invoke(app, ["import", "--data-dir", str(data_paths.root)]).exit_code != 0


def test_release_commands(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    registry = ArtifactRegistry(root)
    for version in ("v1", "v2"):
        (registry.stage("retail", version) / "model.bin").write_bytes(version.encode())
        registry.finalize("retail", version, training_window=None, metrics={"auc": 0.7})
    opts = ["--domain", "retail", "--artifacts-dir", str(root)]
    refused = runner.invoke(app, ["releases", "promote", "--version", "v1", *opts])
    assert refused.exit_code == 3  # a bare model.bin is no release serving could load
    # --force promotes what serving's load check refuses (these releases hold no models)
    assert runner.invoke(app, ["releases", "promote", "--version", "v1", "--force", *opts]).exit_code == 0
    assert runner.invoke(app, ["releases", "promote", "--version", "v2", "--force", *opts]).exit_code == 0
    listed = runner.invoke(app, ["releases", "list", *opts]).output.splitlines()
    assert [line[:4] for line in listed] == ["  v1", "* v2"] and "auc=0.7" in listed[0]
    (root / "retail" / "v1" / "model.bin").write_bytes(b"xx")
    verify = runner.invoke(app, ["releases", "verify", "--version", "v1", *opts])
    assert verify.exit_code == 1 and "checksum mismatch: model.bin" in verify.output
    rollback = runner.invoke(app, ["releases", "rollback", *opts])
    assert rollback.exit_code == 1 and "refused" in rollback.output
    assert registry.current("retail") == "v2"

"""The DAG settings file: defaults, per-domain overrides, and early failure on a misspelt rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from orchestration.settings import DEFAULT_FILE, _load, load_settings


def test_the_shipped_settings() -> None:
    settings = load_settings()
    args = settings.defaults.default_args()
    assert args["retries"] >= 2 and args["retry_exponential_backoff"] > 1
    assert args["retry_delay"] < args["max_retry_delay"]
    assert settings.materialize_every == timedelta(minutes=30)
    assert settings.quality("banking").min_rows == 50  # the override
    assert settings.quality("retail").min_rows == 100  # the default
    assert settings.quality("banking").max_rejected_rate == settings.quality("retail").max_rejected_rate
    index = ["collaborative_recall@100", "content_recall@100"]
    assert [r.name for r in settings.gate_policy("retail").rules] == ["recall@100", "ndcg@10", "ranker_auc", *index]
    assert [r.name for r in settings.gate_policy("banking").rules] == ["recall@10", "ndcg@10", "ranker_auc", *index]


def test_a_misspelt_rule_fails_when_the_file_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load(DEFAULT_FILE.read_text())
    raw["quality"]["domains"]["banking"] = {"min_row": 5}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RECSYS_ORCHESTRATION_FILE", str(path))
    with pytest.raises(ValueError, match="min_row"):
        _load(str(path))

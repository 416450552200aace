"""Serving settings: the YAML file, the domain config and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from common.paths import DataPaths
from serving.settings import Budgets, load_settings


def test_settings_from_the_repository_files(data_paths: DataPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_API_KEY", "from-the-environment")
    settings = load_settings()
    assert settings.domains == ("retail", "banking")  # every writable domain; movielens is read-only
    assert settings.api_key == "from-the-environment" and "from-the-environment" not in repr(settings)
    assert settings.data_root == data_paths.root
    banking, retail = settings.rules["banking"], settings.rules["retail"]
    assert banking.filters.eligibility and not retail.filters.eligibility
    assert banking.filters.purchased and retail.filters.purchased  # repurchase_allowed: false in domains.yaml
    assert not settings.trust_context_timestamp  # simulated time is opt-in


def test_a_variant_file_turns_simulated_time_on(data_paths: DataPaths, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from loop.service import write_variant

    variant = write_variant(tmp_path / "serving.yaml", {}, {"trust_context_timestamp": True})
    monkeypatch.setenv("RECSYS_SERVING_FILE", str(variant))
    assert load_settings().trust_context_timestamp


def test_bad_settings_are_refused(data_paths: DataPaths, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="more than the total"):
        Budgets(total=50, user_features=20, retrieval=20, item_features=10, ranking=10)
    with pytest.raises(KeyError, match="unknown domain"):
        load_settings(domains=["groceries"])
    partial = tmp_path / "serving.yaml"
    partial.write_text("serving: {}\ndomains:\n  retail: {}\n")
    with pytest.raises(ValidationError, match="no re-ranking rules for served domain"):
        load_settings(domains=["retail", "banking"], config_path=partial)


def test_the_read_api_key_comes_from_the_environment(data_paths: DataPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_READ_API_KEY", raising=False)
    assert load_settings().read_api_key is None  # unset: the read API is open, as before
    monkeypatch.setenv("RECSYS_READ_API_KEY", "read-key-from-env")
    settings = load_settings()
    assert settings.read_api_key == "read-key-from-env" and "read-key-from-env" not in repr(settings)
    assert settings.admission.recommendations >= 1 and settings.admission.events >= 1

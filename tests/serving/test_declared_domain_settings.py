"""A domain declared with ``recsys domain add`` is served without editing config/serving.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.domains import DomainConfig, declare_domain
from common.paths import REPO_ROOT


@pytest.fixture
def declared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "domains.yaml"
    path.write_text((REPO_ROOT / "config" / "domains.yaml").read_text())
    monkeypatch.setenv("RECSYS_DOMAINS_FILE", str(path))
    for name, prefix, eligibility in (("films", "f_", False), ("loans", "l_", True)):
        declare_domain(DomainConfig(
            name=name, description=name, id_prefix=prefix, read_only=False, event_types=("view", "purchase"),
            positive_events={"view": 1.0, "purchase": 4.0}, logs_impressions=False, eligibility=eligibility))


def test_declared_domains_get_the_default_rules_with_their_eligibility(declared: None) -> None:
    from serving.settings import load_settings

    settings = load_settings()
    assert {"retail", "banking", "films", "loans"} <= set(settings.domains)
    assert not settings.rules["films"].filters.eligibility
    assert settings.rules["loans"].filters.eligibility
    assert settings.rules["films"].filters.purchased  # repurchase_allowed defaults to false
    assert settings.rules["retail"].diversity.max_share == 0.3  # a domain's own block still wins

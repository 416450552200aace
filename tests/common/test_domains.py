"""Declaring a domain of one's own: validation, the appended file, and what reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.domains import DomainConfig, DomainDeclarationError, declare_domain, domains
from common.paths import REPO_ROOT


@pytest.fixture
def domain_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "domains.yaml"
    path.write_text((REPO_ROOT / "config" / "domains.yaml").read_text())
    monkeypatch.setenv("RECSYS_DOMAINS_FILE", str(path))
    return path


def _films(**overrides: object) -> DomainConfig:
    spec = {"name": "films", "description": "a film shop", "id_prefix": "f_", "read_only": False,
            "event_types": ("view", "purchase"), "positive_events": {"view": 1.0, "purchase": 4.0},
            "conversion_event": "purchase", "logs_impressions": False, **overrides}
    return DomainConfig(**spec)  # type: ignore[arg-type]


def test_a_declared_domain_is_appended_with_the_comments_kept_and_read_back(domain_file: Path) -> None:
    before = domain_file.read_text()
    declare_domain(_films(extra={"quality": {"min_rows": 1}}))
    assert domain_file.read_text().startswith(before)  # comments and entries untouched
    films = domains()["films"]
    assert films.id_prefix == "f_" and not films.logs_impressions and films.extra == {"quality": {"min_rows": 1}}
    assert "films" in [d.name for d in domains().values() if not d.read_only]


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"name": "Films!"}, "name"),
    ({"id_prefix": "f"}, "id_prefix"),
    ({"id_prefix": "r_"}, "overlaps domain 'retail'"),
    ({"event_types": ("view", "teleport")}, "not in the event contract"),
    ({"positive_events": {}}, "positive_events is empty"),
    ({"positive_events": {"click": 1.0}}, "not among the domain's event_types"),
    ({"conversion_event": "application_approved"}, "conversion_event"),
    ({"logs_impressions": True}, "'impression' is not among"),
    ({"name": "retail", "id_prefix": "rr_"}, "already declared"),
])
def test_a_bad_declaration_is_refused_and_the_file_is_unchanged(
    domain_file: Path, overrides: dict, problem: str
) -> None:
    before = domain_file.read_text()
    with pytest.raises(DomainDeclarationError, match=problem):
        declare_domain(_films(**overrides))
    assert domain_file.read_text() == before


def test_quality_rules_of_a_domain_without_impressions(domain_file: Path) -> None:
    from orchestration.settings import load_settings

    declare_domain(_films(extra={"quality": {"min_rows": 1, "max_staleness_hours": 24}}))
    rules = load_settings().quality("films")
    assert "impression" not in rules.required_event_types
    assert rules.min_rows == 1 and rules.max_staleness_hours == 24
    assert load_settings().quality("retail").required_event_types == ("impression",)


def test_recsys_domain_add_declares_or_exits_2_with_the_reason(domain_file: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    ok = runner.invoke(app, ["domain", "add", "films", "--id-prefix", "f_", "--quality", "min_rows=1"])
    assert ok.exit_code == 0, ok.output
    assert domains()["films"].extra["quality"] == {"min_rows": 1}
    bad = runner.invoke(app, ["domain", "add", "shop", "--id-prefix", "b_"])
    assert bad.exit_code == 2 and "overlaps domain 'banking'" in bad.output
    assert "shop" not in domains()


def test_account_events_are_declared_apart_from_the_item_events() -> None:
    bank = domains()["banking"]
    assert set(bank.account_events) == {"card_spend", "salary_credit", "transfer"}
    assert set(bank.item_event_types) == set(bank.event_types) - set(bank.account_events)
    assert not bank.problems() and domains()["retail"].item_event_types == domains()["retail"].event_types

    def problems(**changes) -> list[str]:
        spec = {"name": "shop", "description": "", "id_prefix": "s_", "read_only": False,
                "event_types": ("impression", "view", "purchase", "card_spend"), "positive_events": {"view": 1.0},
                "conversion_event": "purchase", **changes}
        return DomainConfig(**spec).problems()

    assert not problems(account_events=("card_spend",))
    assert any("account_events" in p for p in problems(account_events=("salary_credit",)))  # not an event type
    assert any("account_events" in p for p in problems(account_events=("view",)))  # not an account event
    assert any("cannot be positive" in p for p in problems(account_events=("card_spend",),
                                                            positive_events={"card_spend": 1.0}))

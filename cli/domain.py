"""``recsys domain ...``: declare a business of your own (a domain) and list the declared ones."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="domain",
    help="Domains: declare your own business (id prefix, event types, weights) and list the declared ones.",
    no_args_is_help=True,
    add_completion=False,
)


def _weights(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise typer.BadParameter(f"{part!r}: expected EVENT=WEIGHT, e.g. view=1,purchase=4") from None
    return out


def _quality_rules(pairs: list[str]) -> dict[str, object]:
    """``RULE=VALUE`` pairs, typed and checked against the data-quality rules."""
    import yaml

    from orchestration.settings import QualityRules

    rules: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r}: expected RULE=VALUE, e.g. min_rows=1")
        rules[name.strip()] = yaml.safe_load(value)
    try:
        QualityRules.from_mapping(rules)
    except (TypeError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    return rules


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Domain name: lower-case letters, digits, '_' (e.g. shop).")],
    id_prefix: Annotated[str, typer.Option(help="Prefix of every user and item id of the domain, e.g. 'shop_'.")],
    event_types: Annotated[str, typer.Option(help="Comma-separated event types the domain uses.")] = "view,purchase",
    positive: Annotated[str, typer.Option(help="Positive events and weights: EVENT=WEIGHT,...")] = "view=1,purchase=4",
    conversion: Annotated[str, typer.Option(help="The conversion event (the business outcome).")] = "purchase",
    repurchase: Annotated[bool, typer.Option(help="Items may be recommended again after a conversion.")] = False,
    impressions: Annotated[bool, typer.Option(
        "--impressions/--no-impressions", help="Whether the domain logs impressions (served slates).")] = False,
    eligibility: Annotated[bool, typer.Option(help="The catalog carries eligibility rules serving enforces.")] = False,
    quality: Annotated[list[str] | None, typer.Option(
        help="A nightly data-quality rule of this domain, RULE=VALUE (repeatable), e.g. min_rows=1 for a "
             "thin daily volume; the rules are in orchestration/nightly.yaml.")] = None,
    description: Annotated[str, typer.Option(help="One line about the business.")] = "",
) -> None:
    """Declare a domain: validated, then appended to config/domains.yaml ($RECSYS_DOMAINS_FILE)."""
    from common.domains import DomainConfig, DomainDeclarationError, declare_domain

    rules = _quality_rules(quality or [])
    config = DomainConfig(
        name=name, description=description or f"{name} (declared with recsys domain add)", id_prefix=id_prefix,
        read_only=False, event_types=tuple(t.strip() for t in event_types.split(",") if t.strip()),
        positive_events=_weights(positive), conversion_event=conversion, repurchase_allowed=repurchase,
        logs_impressions=impressions, eligibility=eligibility, extra={"quality": rules} if rules else {},
    )
    try:
        path = declare_domain(config)
    except DomainDeclarationError as err:
        typer.secho(f"domain {name!r} not declared: {err}", err=True, fg="red")
        raise typer.Exit(2) from None
    typer.echo(f"declared domain {name!r} in {path}: ids start with {id_prefix!r}, events {list(config.event_types)}, "
               f"positives {config.positive_events}, conversion {conversion!r}, "
               f"{'logs' if impressions else 'no'} impressions")
    typer.echo("next: recsys data import --events ... --catalog ... --users ...; then recsys airflow nightly")


@app.command("list")
def list_domains() -> None:
    """The declared domains, one line each."""
    from common.domains import config_file, domains

    typer.echo(f"# {config_file()}")
    for d in domains().values():
        kind = "read-only benchmark" if d.read_only else ("impressions" if d.logs_impressions else "no impressions")
        typer.echo(f"{d.name:12s} prefix {d.id_prefix:8s} {kind:20s} events {','.join(d.event_types)}")

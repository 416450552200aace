"""``recsys experiments``: A/B metrics, sample-ratio-mismatch check, off-policy evaluation, dashboard."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import cast

import typer

from common.paths import DataPaths

app = typer.Typer(name="experiments", no_args_is_help=True,
                  help="A/B tests: metrics from the lake, SRM, off-policy evaluation, the dashboard.")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not a YYYY-MM-DD date: {text!r}") from None


def _pairs(items: list[str], option: str) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{option} expects ARM=NUMBER, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{option} expects ARM=NUMBER, got {item!r}") from None
    return out


@app.command("ab-metrics")
def ab_metrics(
    start: str = typer.Option(..., help="First date of the window (YYYY-MM-DD)."),
    end: str = typer.Option(..., help="Last date of the window (YYYY-MM-DD)."),
    domain: list[str] = typer.Option([], "--domain", "-d", help="Domain (repeatable; default: every writable domain)."),
    source: str = typer.Option("compacted", help="Lake zone: compacted (validated, deduplicated) or raw."),
    ci: str = typer.Option("delta", help="Intervals of ratio/mean metrics: delta (analytic) or bootstrap."),
    n_boot: int = typer.Option(2000, min=100, help="Bootstrap resamples (with --ci bootstrap)."),
    alpha: float = typer.Option(0.05, min=0.0001, max=0.5, help="Two-sided significance level."),
    power: float = typer.Option(0.8, min=0.05, max=0.999, help="Power of the minimum detectable effect."),
    lookback_days: int = typer.Option(28, min=0, help="Popularity window for novelty and serendipity."),
    control: str | None = typer.Option(None, help="Compare the other arms against this arm (default: the "
                                       "experiment's control); e.g. the arm without boosts, to measure the boosts alone."),
    master: str | None = typer.Option(None, help="Spark master URL (default local[*])."),
) -> None:
    """Per arm and day: CTR, conversion, AOV, revenue per user, cross-sell, coverage, novelty, serendipity,
    intra-list diversity; then each arm vs control with CIs, SRM and MDE. Writes data/experiments/<domain>/."""
    from common.domains import writable_domains
    from experiments.ab_metrics import ABOptions, Source, run
    from experiments.analysis import CiMethod
    from spark_jobs.session import job_session

    if source not in ("compacted", "raw") or ci not in ("delta", "bootstrap"):
        raise typer.BadParameter("--source is compacted|raw and --ci is delta|bootstrap")
    options = ABOptions(ci=cast(CiMethod, ci), alpha=alpha, power=power, n_boot=n_boot, lookback_days=lookback_days,
                        source=cast(Source, source), control=control)
    started = time.perf_counter()
    typer.echo("starting Spark")
    with job_session("recsys-ab-metrics", master) as spark:
        run(spark, DataPaths.default(), domain or writable_domains(), _date(start), _date(end), options)
    typer.echo(f"done in {time.perf_counter() - started:.1f}s")


@app.command()
def srm(
    count: list[str] = typer.Option(..., "--count", "-c", help="Observed units per arm, ARM=N (repeat)."),
    share: list[str] = typer.Option([], "--share", "-s", help="Configured share per arm, ARM=S (repeat)."),
    domain: str | None = typer.Option(None, help="Take the shares from this domain's experiment instead."),
    threshold: float = typer.Option(0.001, help="Flag a mismatch when the chi-square p-value is below this."),
) -> None:
    """Sample-ratio-mismatch check (chi-square goodness of fit). Exit code 1 when a mismatch is flagged."""
    from experiments.assignment import experiment_for
    from experiments.stats import srm_check

    observed = {arm: int(n) for arm, n in _pairs(count, "--count").items()}
    if domain:
        experiment = experiment_for(domain)
        if experiment is None:
            raise typer.BadParameter(f"no experiment is configured for domain {domain!r}")
        shares = experiment.shares
    else:
        shares = _pairs(share, "--share") or {arm: 1.0 for arm in observed}
    result = srm_check(observed, shares, threshold)
    for arm in result.observed:
        typer.echo(f"{arm:<16} observed {result.observed[arm]:>10,}  expected {result.expected[arm]:>12,.1f}")
    verdict = "SAMPLE RATIO MISMATCH" if result.flagged else "ok"
    typer.echo(f"chi2 = {result.chi2:.4g}, p = {result.p_value:.4g} (threshold {threshold}): {verdict}")
    if result.flagged:
        raise typer.Exit(1)


@app.command()
def ope(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain whose logged impressions are used."),
    target: Path = typer.Option(..., exists=True, dir_okay=False,
                                help="Candidate policy: Parquet or CSV with request_id, item_id, target_propensity."),
    start: str | None = typer.Option(None, help="First event date (YYYY-MM-DD; default: all)."),
    end: str | None = typer.Option(None, help="Last event date (YYYY-MM-DD; default: all)."),
    reward: str = typer.Option("click", help="Reward of a slot: click or conversion."),
    n_boot: int = typer.Option(2000, min=100, help="Bootstrap resamples (requests are resampled)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """IPS and self-normalised IPS estimates (bootstrap CIs, effective sample size) of a candidate policy's
    reward per slot, from the randomised (exploration) slots of the logged impressions."""
    import pandas as pd

    from common.lake import read_events
    from experiments.ope import evaluate_policy, exploration_log

    typer.echo(f"reading {domain} events")
    events = read_events(DataPaths.default(), domain)
    day = pd.to_datetime(events["timestamp"], utc=True).dt.date
    keep = (day >= (_date(start) if start else date.min)) & (day <= (_date(end) if end else date.max))
    log = exploration_log(events[keep], reward)
    policy = pd.read_parquet(target) if target.suffix == ".parquet" else pd.read_csv(target)
    typer.echo(f"{len(log):,} exploration slots in {log['request_id'].nunique():,} requests")
    for result in evaluate_policy(log, policy, n_boot=n_boot, seed=seed).values():
        low, high = result.ci
        typer.echo(f"{result.estimator:<6} {result.value:.5f}  95% CI [{low:.5f}, {high:.5f}]  "
                   f"ESS {result.effective_sample_size:,.1f} of {result.slots:,}  (logging policy {result.logged_reward:.5f})")


@app.command()
def dashboard(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8050, min=1, max=65535, help="TCP port."),
    screenshot: Path | None = typer.Option(
        None, help="Render the page once in headless Chromium, save this PNG and exit (e.g. reports/dashboard.png)."
    ),
    width: int = typer.Option(1280, min=320, help="Screenshot width (px)."),
    height: int = typer.Option(2000, min=320, help="Screenshot height (px); the page below it is cut."),
) -> None:
    """Serve the dashboard alone (A/B files of RECSYS_DATA_DIR; serving metrics appear when mounted in
    the service), or save a screenshot of it."""
    import uvicorn
    from fastapi import FastAPI

    from experiments.browser import screenshot as take_screenshot
    from experiments.browser import serve_app
    from experiments.dashboard import dashboard_router

    app_ = FastAPI(title="recsys dashboard")
    app_.include_router(dashboard_router(DataPaths.default()))
    if screenshot is None:
        typer.echo(f"dashboard on http://{host}:{port}/dashboard")
        uvicorn.run(app_, host=host, port=port, log_level="warning")
        return
    started = time.perf_counter()
    with serve_app(app_, host) as url:
        typer.echo(f"rendering {url}/dashboard in headless Chromium")
        take_screenshot(f"{url}/dashboard", screenshot, width, height)
    typer.echo(f"wrote {screenshot} in {time.perf_counter() - started:.1f}s")

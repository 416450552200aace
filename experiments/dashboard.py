"""The monitoring dashboard: a FastAPI router with a server-rendered page and its JSON data.

``GET /dashboard``       HTML page, charts as inline SVG (no JavaScript, nothing fetched from a CDN)
``GET /dashboard/data``  the same data as JSON

Per domain and arm (from the ``ab_metrics`` job's files under ``data/experiments/<domain>/``): the
daily CTR, conversion, AOV, cross-sell conversion, coverage, novelty, serendipity and intra-list
diversity, the window's lifts with confidence intervals, SRM and MDE; and from the serving process
(its Prometheus registry or any :data:`~experiments.serving_stats.ServingStatsSource`): per-stage
latency, degradation-path shares and feature freshness. Serving mounts it with::

    app.include_router(dashboard_router(settings.data_paths, registry=services.metrics.registry))
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CollectorRegistry

from common.paths import DataPaths
from experiments.analysis import METRICS, read_outputs
from experiments.serving_stats import ServingStatsSource, registry_stats
from experiments.svg import Formatter, bar_chart, interval_chart, line_chart, number, percent

LABELS = {m.name: m.label for m in METRICS} | {
    "coverage": "catalog coverage", "novelty": "novelty (bits)", "serendipity": "serendipity",
    "intra_list_diversity": "intra-list diversity",
}
NUMBER_METRICS = {"aov", "revenue_per_user", "novelty", "intra_list_diversity"}  # all others are rates
DAILY_CHARTS = [m.name for m in METRICS] + ["coverage", "novelty", "serendipity", "intra_list_diversity"]
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.grid{display:flex;flex-wrap:wrap;gap:12px} .chart{background:#fff;border:1px solid #e5e5e5;border-radius:6px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0}
td,th{border:1px solid #e5e5e5;padding:4px 8px;text-align:right} th{background:#f0f0f0} td:first-child{text-align:left}
.ok{color:#2a7d2a;font-weight:600} .bad{color:#c62828;font-weight:600} .muted{color:#777}
"""


def dashboard_data(paths: DataPaths, serving: ServingStatsSource | None = None) -> dict[str, Any]:
    """Everything the page shows, JSON-ready (missing values are NaN in memory, null in JSON)."""
    domains = {
        name: {"daily": daily.to_dict("records"), "comparison": comparison}
        for name, (daily, comparison) in read_outputs(paths).items()
    }
    return {"domains": domains, "serving": serving().as_dict() if serving else None}


def _fmt_for(metric: str) -> Formatter:
    return number if metric in NUMBER_METRICS else percent


def _num(v: float | None) -> float:
    """JSON nulls (NaN when written) back to NaN."""
    return math.nan if v is None else float(v)


def _value(v: Any, fmt: Formatter) -> str:
    return fmt(v) if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def _daily_charts(daily: list[dict[str, Any]]) -> list[str]:
    dates = sorted({r["date"] for r in daily})
    arms = sorted({r["arm"] for r in daily})
    by_key = {(r["arm"], r["date"]): r for r in daily}
    charts = []
    for metric in DAILY_CHARTS:
        if not daily or metric not in daily[0]:
            continue
        series = {arm: [by_key.get((arm, d), {}).get(metric) for d in dates] for arm in arms}
        charts.append(line_chart(f"{LABELS[metric]} per day", dates, series, _fmt_for(metric)))
    return charts


def _comparison_section(comparison: dict[str, Any]) -> str:
    srm = comparison["srm"]
    status = ('<span class="bad">sample ratio mismatch</span>' if srm["flagged"] else '<span class="ok">ok</span>')
    users = ", ".join(f"{escape(a)}: {int(n):,}" for a, n in sorted(srm["observed"].items()))
    head = (f'<p>Experiment <b>{escape(str(comparison["experiment"]))}</b>, window {escape(comparison["window"]["start"])}'
            f' .. {escape(comparison["window"]["end"])}; users {users}; SRM chi2 = {srm["chi2"]:.3g}, '
            f'p = {srm["p_value"]:.3g}: {status}</p>')
    rows = ["<tr><th>metric</th><th>arm</th><th>control</th><th>arm value</th><th>lift</th><th>95% CI</th>"
            "<th>p</th><th>MDE (rel.)</th></tr>"]
    forest = []
    several = len({c["arm"] for c in comparison["comparisons"]}) > 1
    for c in comparison["comparisons"]:
        fmt = _fmt_for(c["metric"])
        low, high = c["lift_ci"]
        label = LABELS.get(c["metric"], c["metric"]) + (f' ({c["arm"]})' if several else "")
        forest.append((label, _num(c["lift"]), _num(low), _num(high)))
        rows.append(f'<tr><td>{escape(LABELS.get(c["metric"], c["metric"]))}</td><td>{escape(c["arm"])}</td>'
                    f'<td>{_value(c["control"], fmt)}</td><td>{_value(c["treatment"], fmt)}</td>'
                    f'<td>{_value(c["lift"], percent)}</td><td>[{_value(low, percent)}, {_value(high, percent)}]</td>'
                    f'<td>{_value(c["p_value"], number)}</td><td>{_value(c["mde_relative"], percent)}</td></tr>')
    chart = interval_chart("relative lift vs control (95% CI)", forest)
    return head + f'<table class="comparison">{"".join(rows)}</table><div class="grid">{chart}</div>'


def _serving_section(serving: dict[str, Any] | None) -> str:
    if serving is None:
        return '<p class="muted">No serving metrics source is attached to this dashboard.</p>'
    latency = serving["latency"]
    groups = [f'{s["domain"]}:{s["stage"]}' for s in latency]
    charts = [bar_chart("stage latency (ms)", groups, {"p50": [s["p50_ms"] for s in latency],
                                                         "p95": [s["p95_ms"] for s in latency]}, number)]
    shares = serving["path_shares"]
    paths = sorted({p for v in shares.values() for p in v})
    domains = sorted(shares)
    charts.append(bar_chart("serving paths (share of responses)", domains,
                            {p: [shares[d].get(p, 0.0) for d in domains] for p in paths}, percent))
    fresh = [(f"{d}:{view}", age) for d, views in sorted(serving["freshness_seconds"].items())
             for view, age in views.items()]
    charts.append(bar_chart("feature freshness (s since newest value)", [g for g, _ in fresh],
                            {"age": [a for _, a in fresh]}, number))
    return f'<div class="grid">{"".join(charts)}</div>'


def render_page(data: dict[str, Any]) -> str:
    """The dashboard HTML for :func:`dashboard_data`'s output."""
    sections = []
    for domain, content in sorted(data["domains"].items()):
        sections.append(f'<section class="domain" id="domain-{escape(domain)}"><h2>{escape(domain)}</h2>')
        if content["comparison"]:
            sections.append(_comparison_section(content["comparison"]))
        sections.append(f'<div class="grid">{"".join(_daily_charts(content["daily"]))}</div></section>')
    if not data["domains"]:
        sections.append('<p class="muted">No A/B metrics yet: run <code>recsys experiments ab-metrics</code>.</p>')
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>recsys dashboard</title>"
            f"<style>{STYLE}</style></head><body><h1>Recommendation platform: experiments and serving</h1>"
            "<p class='muted'>Per domain and arm from the A/B metrics job; serving metrics live from the service.</p>"
            + "".join(sections) + f"<h2>Serving</h2>{_serving_section(data['serving'])}</body></html>")


def dashboard_router(paths: DataPaths | None = None, registry: CollectorRegistry | None = None,
                     serving_stats: ServingStatsSource | None = None) -> APIRouter:
    """The dashboard routes. Serving metrics come from ``serving_stats`` if given, else from ``registry``."""
    router = APIRouter(tags=["dashboard"])
    source = serving_stats or ((lambda: registry_stats(registry)) if registry is not None else None)

    def current() -> dict[str, Any]:
        return dashboard_data(paths or DataPaths.default(), source)

    @router.get("/dashboard", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        """The dashboard page."""
        return HTMLResponse(render_page(current()))

    @router.get("/dashboard/data")
    def data() -> Response:
        """The dashboard's data as JSON."""
        return Response(orjson.dumps(current(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
                        media_type="application/json")

    return router

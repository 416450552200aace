"""Writing a study's results: ``reports/loop/{ab,health,ope,loop}.json`` and ``.md``, ``health.png``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from experiments.analysis import format_table
from loop.ab import DomainAB
from loop.health import health_table, plot_health
from loop.ope import OPECheck


def _write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
                                  | orjson.OPT_NON_STR_KEYS, default=str))
    return path


def _pct(value: float) -> str:
    return f"{value:+.1%}" if np.isfinite(value) else "n/a"


def headline_table(results: Mapping[str, DomainAB]) -> str:
    """Markdown: the headline lift of each arm against the control per domain, overall and per day, with
    its 95% CI and the SRM check."""
    lines = ["| domain | metric | day | arm | control | arm value | lift | 95% CI of lift | p | SRM p | MDE (rel.) |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for domain, result in results.items():
        for row in result.headline_rows():
            low, high = row["lift_ci"]
            lines.append(
                f"| {domain} | {row['label']} | {row['day']} | {row['arm']} | {row['control']:.4g} | "
                f"{row['treatment']:.4g} | "
                f"{_pct(row['lift'])} | [{_pct(low)}, {_pct(high)}] | {row['p_value']:.3g} | {row['srm_p']:.3g}"
                f"{' MISMATCH' if row['srm_flagged'] else ''} | {_pct(row['mde_relative'])} |")
    return "\n".join(lines)


def write_ab(results: Mapping[str, DomainAB], out: Path) -> str:
    """``ab.json`` + ``ab.md``; returns the printed text (the full tables of the window)."""
    payload = {domain: {"headline": r.headline, "overall": r.overall.as_dict(),
                        "days": [d.as_dict() for d in r.days], "headline_rows": r.headline_rows()}
               for domain, r in results.items()}
    _write_json(out / "ab.json", payload)
    tables = "\n\n".join(format_table(r.overall) for r in results.values())
    single = {d: sorted(r.overall.arms) for d, r in results.items() if len(r.overall.arms) < 2}
    note = "".join(f"\n**{d}: the service returned only the arm(s) {arms}: no A/B comparison is possible.**\n"
                   for d, arms in single.items())
    text = (f"# Closed-loop A/B result\n{note}\n{headline_table(results)}\n\n"
            f"## All metrics over the window\n\n```\n{tables}\n```\n")
    (out / "ab.md").write_text(text)
    return note.replace("**", "") + tables


def write_health(frames: Sequence[pd.DataFrame], out: Path) -> str | None:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return None
    frame = pd.concat(frames, ignore_index=True)
    _write_json(out / "health.json", frame.to_dict("records"))
    plot_health(frame, out / "health.png")
    means = frame.groupby(["domain", "variant"])[["coverage", "novelty", "long_tail_share", "intra_list_diversity"]].mean()
    text = (f"# Feedback-loop health\n\nPer day (full-pipeline slates):\n\n{health_table(frame)}\n\n"
            f"Means over the days:\n\n```\n{means.round(4).to_string()}\n```\n\n![health](health.png)\n")
    (out / "health.md").write_text(text)
    return text


def write_ope(checks: Sequence[OPECheck], out: Path) -> str | None:
    if not checks:
        return None
    _write_json(out / "ope.json", [c.as_dict() for c in checks])
    lines = ["| domain | day | candidate share | estimator | estimate | 95% CI | ESS | slots | simulated (expected) | simulated (realised) | logging policy (expected) |",
             "|---|---|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for check in checks:
        for name, e in check.estimates.items():
            lines.append(
                f"| {check.domain} | {check.day} | {check.candidate_share} | {name} | {e['value']:.4f} | "
                f"[{e['ci'][0]:.4f}, {e['ci'][1]:.4f}] | {e['effective_sample_size']:.0f} | {e['slots']} | "
                f"{check.candidate['expected']:.4f} | {check.candidate['realised']:.4f} | {check.logging['expected']:.4f} |")
    text = "# Off-policy estimate vs the served candidate (click rate per randomised slot)\n\n" + "\n".join(lines) + "\n"
    (out / "ope.md").write_text(text)
    return text


def write_summary(summary: Mapping[str, Any], out: Path) -> Path:
    return _write_json(out / "loop.json", summary)

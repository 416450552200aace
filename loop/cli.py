"""``recsys loop ...``: the closed-loop A/B simulation against the running service.

``demo`` is the short end-to-end run (what ``make demo`` calls); ``run`` exposes every knob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.paths import REPO_ROOT

app = typer.Typer(
    name="loop",
    help="Closed-loop simulation: synthetic users against the running service, nightly retraining, "
         "A/B result, feedback-loop health, off-policy check.",
    no_args_is_help=True,
    add_completion=False,
)

WorkDir = Annotated[Path, typer.Option("--work-dir", help="Where the world copies, services' logs and the "
                                       "Airflow home go (reused: a prepared world is not generated again).",
                                       file_okay=False)]
ReportDir = Annotated[Path, typer.Option("--report-dir", help="Where ab/health/ope/loop .json + .md go.",
                                         file_okay=False)]


def _run(profile: str, days: int, retrain: str, training_days: int, retrain_every: int, max_requests: int | None, time_limit: float | None,
         variants: list[str], ope: bool, candidate_share: float, url: str | None, work_dir: Path, report_dir: Path,
         seed: int, world_seed: int) -> None:
    from loop.simulate import LoopSettings
    from loop.study import VARIANTS, StudySettings, run_study

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise typer.BadParameter(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}", param_hint="--variant")
    if retrain not in ("airflow", "fast", "none"):
        raise typer.BadParameter("choose airflow, fast or none", param_hint="--retrain")
    loop = LoopSettings(profile=profile, days=days, retrain=retrain, training_days=training_days,  # type: ignore[arg-type]
                        retrain_every=retrain_every,
                        max_requests_per_day=max_requests, time_limit_s=time_limit, seed=seed)
    settings = StudySettings(loop=loop, work_dir=work_dir.resolve(), report_dir=report_dir.resolve(),
                             world_seed=world_seed, variants=tuple(variants), ope=ope and url is None,
                             candidate_share=candidate_share, url=url)
    result = run_study(settings, say=typer.echo)
    typer.echo("")
    typer.echo(result.ab_text)
    typer.echo(f"\nreports in {settings.report_dir} ({result.seconds:.0f} s)")


@app.command()
def run(
    profile: Annotated[str, typer.Option(help="world profile: tiny, demo or bench")] = "demo",
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 7,
    retrain: Annotated[str, typer.Option(help="between days: airflow (the nightly DAG), fast (release builder + "
                                         "the DAG's gate in this process, no Airflow) or none")] = "airflow",
    training_days: Annotated[int, typer.Option(min=2, help="training window of the nightly releases")] = 7,
    retrain_every: Annotated[int, typer.Option(min=1, help="retrain after every N-th day (the stream still "
                                               "lands every day's events each night)")] = 1,
    max_requests: Annotated[int | None, typer.Option(min=1, help="cap on slate requests per domain and day")] = None,
    time_limit: Annotated[float | None, typer.Option(help="no new simulated day starts after this many seconds")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="serving variants to run (on, off); repeatable")] = None,
    ope: Annotated[bool, typer.Option(help="off-policy check of a candidate exploration share")] = True,
    candidate_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="the candidate's exploration share")] = 0.3,
    url: Annotated[str | None, typer.Option(help="use this running service (its data root must be "
                                            "RECSYS_DATA_DIR) instead of starting one")] = None,
    work_dir: WorkDir = REPO_ROOT / "data" / "loop",
    report_dir: ReportDir = REPO_ROOT / "reports" / "loop",
    seed: Annotated[int, typer.Option(help="seed of the users' behaviour in the loop")] = 11,
    world_seed: Annotated[int, typer.Option(help="seed of the synthetic world")] = 7,
) -> None:
    """The closed loop for N simulated days: A/B table (AOV, cross-sell) with CIs and SRM, feedback-loop
    health of each variant, the off-policy check; writes reports/loop/*."""
    _run(profile, days, retrain, training_days, retrain_every, max_requests, time_limit, variant or ["on", "off"], ope,
         candidate_share, url, work_dir, report_dir, seed, world_seed)


@app.command()
def demo(
    work_dir: WorkDir = REPO_ROOT / "data" / "loop-demo",
    report_dir: ReportDir = REPO_ROOT / "reports" / "loop",
) -> None:
    """A short loop end to end (tiny world, 2 simulated days, fast retraining, both variants, the
    off-policy check) that prints the A/B table."""
    _run("tiny", 2, "fast", 7, 1, None, None, ["on", "off"], True, 0.3, None, work_dir, report_dir, 11, 7)

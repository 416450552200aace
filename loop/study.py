"""The closed-loop study end to end: one world, the loop under each serving variant, the reports.

1. ``<work>/base``: the world of the profile and its first releases (reused when already prepared);
2. per variant (``on``: the configured re-ranking; ``off``: diversity injection and exploration
   switched off), a copy of the base in ``<work>/<variant>`` and a service subprocess reading that
   variant's settings file; :func:`loop.simulate.run_loop` for the simulated days;
3. the A/B result of the ``on`` run (:mod:`loop.ab`), the feedback-loop health of every variant
   (:mod:`loop.health`), and the off-policy check (:mod:`loop.ope`) on the day after the loop;
4. ``reports/loop/*`` (:mod:`loop.report`).

With ``url`` (a service already running on the current data root) only step 3's A/B and health of
that service run; the variants and the off-policy check need services this study starts itself.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from common.paths import REPO_ROOT, DataPaths
from common.settings import env
from loop.ab import DomainAB, analyse_loop
from loop.health import daily_health, reference_before
from loop.ope import OPECheck, ope_check
from loop.report import write_ab, write_health, write_ope, write_summary
from loop.service import SIMULATED_TIME, ServiceClient, running_service, write_variant
from loop.simulate import LoopResult, LoopSettings, first_loop_day, prepare_world, run_loop
from simulation.profiles import get_profile
from simulation.truth import GroundTruth

VARIANTS: dict[str, dict[str, Any]] = {
    "on": {},
    "off": {"exploration": {"share": 0.0}, "diversity": {"max_share": 1.0}},
}
ENV_KEYS = ("RECSYS_DATA_DIR", "RECSYS_ARTIFACTS_DIR", "RECSYS_API_KEY")


@dataclass(frozen=True)
class StudySettings:
    loop: LoopSettings
    work_dir: Path
    report_dir: Path = REPO_ROOT / "reports" / "loop"
    world_seed: int = 7
    variants: tuple[str, ...] = ("on", "off")
    ope: bool = True
    candidate_share: float = 0.3
    url: str | None = None


@dataclass
class StudyResult:
    runs: dict[str, LoopResult] = field(default_factory=dict)
    ab: dict[str, DomainAB] = field(default_factory=dict)
    ope: list[OPECheck] = field(default_factory=list)
    ab_text: str = ""
    seconds: float = 0.0


@contextmanager
def data_root(root: Path, api_key: str) -> Iterator[dict[str, str]]:
    """Point this process (and the services it starts) at ``root``'s data and artifacts."""
    env = {"RECSYS_DATA_DIR": str(root / "data"), "RECSYS_ARTIFACTS_DIR": str(root / "artifacts"),
           "RECSYS_API_KEY": api_key}
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def base_marker(settings: StudySettings) -> Path:
    """The file that says ``work_dir/base`` holds the world of these settings with its first releases (a
    base made another way -- e.g. by the nightly DAG -- is used as it is once this file is there)."""
    return settings.work_dir / "base" / (
        f".prepared-{settings.loop.profile}-{settings.world_seed}-{'-'.join(settings.loop.domains)}")


def prepare_base(settings: StudySettings, api_key: str, say: Callable[[str], None]) -> Path:
    marker = base_marker(settings)
    base = marker.parent
    if marker.exists():
        say(f"world and first releases already prepared in {base}")
        return base
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    with data_root(base, api_key):
        say(f"generating the {settings.loop.profile} world and its first releases in {base}")
        night = prepare_world(settings.loop.profile, settings.world_seed, settings.loop.domains, settings.loop.retrain,
                              settings.loop.training_days, airflow_home=settings.work_dir / "airflow")
        if not all(night.releases.values()):
            raise RuntimeError(f"the first night published no release: {night.as_dict()}")
    marker.write_text("ok\n")
    return base


def _ope_checks(settings: StudySettings, client: ServiceClient, env: Mapping[str, str], root: Path,
                truths: Mapping[str, GroundTruth]) -> list[OPECheck]:
    """The off-policy check on the day after the loop, from the world's state at the end of the loop."""
    from serving.settings import load_settings

    candidate_file = write_variant(root / "serving-candidate.yaml", {"exploration": {"share": settings.candidate_share}},
                                   SIMULATED_TIME)
    rules = load_settings(list(settings.loop.domains), config_path=root / "serving-on.yaml").rules
    day = first_loop_day(settings.loop.profile) + timedelta(days=settings.loop.days)
    profile = get_profile(settings.loop.profile)
    checks = []
    with running_service(settings.loop.domains, env, candidate_file, log_file=root / "service-candidate.log") as candidate:
        for name, truth in truths.items():
            checks.append(ope_check(client, candidate, truth, day, profile.size(name).slate_size, rules[name],
                                    settings.candidate_share, settings.loop.seed + 1, settings.loop.max_requests_per_day))
    return checks


def run_variant(settings: StudySettings, base: Path, variant: str, api_key: str,
                say: Callable[[str], None]) -> tuple[LoopResult, list[OPECheck]]:
    root = settings.work_dir / variant
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root, symlinks=True)
    serving_file = write_variant(root / f"serving-{variant}.yaml", VARIANTS[variant], SIMULATED_TIME)
    loop_settings = replace(settings.loop, airflow_home=str(settings.work_dir / "airflow"))
    with data_root(root, api_key) as env, running_service(settings.loop.domains, env, serving_file,
                                                          log_file=root / f"service-{variant}.log") as client:
        say(f"variant {variant}: {settings.loop.days} simulated days against {client.base_url}")
        result = run_loop(loop_settings, client, on_day=lambda d: say(
            f"  {d.domain} {d.day}: {d.requests} slates, {d.events} events, arms {d.arms}, release {d.releases}, "
            f"intake {d.intake} ({d.seconds:.0f} s)"))
        checks = _ope_checks(settings, client, env, root, result.truths) if settings.ope and variant == "on" else []
    return result, checks


def run_study(settings: StudySettings, say: Callable[[str], None] = print) -> StudyResult:
    started = time.perf_counter()
    api_key = env().api_key or secrets.token_hex(16)
    out = StudyResult()
    health = []
    if settings.url:
        with running_service(settings.loop.domains, {"RECSYS_API_KEY": api_key}, url=settings.url) as client:
            out.runs["service"] = run_loop(settings.loop, client)
    else:
        base = prepare_base(settings, api_key, say)
        for variant in settings.variants:
            out.runs[variant], checks = run_variant(settings, base, variant, api_key, say)
            out.ope += checks
    first = first_loop_day(settings.loop.profile)
    for variant, result in out.runs.items():
        paths = DataPaths.default() if settings.url else DataPaths(settings.work_dir / variant / "data")
        for name, events in result.events.items():
            reference = reference_before(paths, name, first)
            health.append(daily_health(name, events, reference, variant))
            if variant in ("on", "service"):
                out.ab[name] = analyse_loop(name, events, reference)
    report_dir = settings.report_dir
    out.ab_text = write_ab(out.ab, report_dir)
    write_health(health, report_dir)
    write_ope(out.ope, report_dir)
    out.seconds = time.perf_counter() - started
    write_summary({"seconds": round(out.seconds, 1), "runs": {v: r.summary() for v, r in out.runs.items()}}, report_dir)
    return out

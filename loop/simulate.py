"""The closed loop: synthetic users interact with the running service over HTTP for N simulated days.

Per simulated day and domain: :func:`simulation.sessions.plan_day` gives the day's sessions and slate
requests; every request goes to ``POST /v1/recommendations`` with the user's context (device, session);
:func:`simulation.behavior.respond` turns the served slates into the users' events at the simulated
times (position-biased clicks, purchases with basket values, banking applications and approvals
decided by the hidden truth, which remembers what was sold / approved); the users' events go back to
``POST /v1/events`` (API key). Impressions are not posted: the service logs every served slot itself,
with its arm and propensity, at the request's simulated time (``context.timestamp``, trusted by the
loop's services); the simulation keeps its own copy of them for the A/B analysis. Between days the night runs (:mod:`loop.nightly`):
stream -> lake -> retraining -> new releases, which the service hot-swaps before the next day starts.

The world's generated history ends the day before the loop's first day, so the first night's
release (see :func:`prepare_world`) is trained on the legacy policy's logs only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from common.paths import DataPaths
from common.schemas import SERVER_FIELDS
from loop.nightly import NightResult, RetrainMode, drain_stream, retrain
from loop.service import ServiceClient, Slate
from simulation.account_events import account_events
from simulation.behavior import SlateContext, respond
from simulation.generate import TRAFFIC
from simulation.profiles import get_profile
from simulation.sessions import SessionPlan, plan_day
from simulation.truth import GroundTruth
from simulation.world import DEVICES

US_PER_DAY = 86_400_000_000
INT_FIELDS = ("position", "quantity")


@dataclass(frozen=True)
class LoopSettings:
    profile: str = "tiny"
    days: int = 2
    domains: tuple[str, ...] = ("retail", "banking")
    retrain: RetrainMode = "fast"
    training_days: int = 7
    retrain_every: int = 1  # retrain after every N-th simulated day (the stream is drained every night)
    max_requests_per_day: int | None = None  # per domain; whole sessions are sampled to stay under it
    time_limit_s: float | None = None  # no new day starts after this much wall time
    seed: int = 11  # of the users' behaviour in the loop (the world has its own seed)
    airflow_home: str | None = None  # retrain="airflow": Airflow home (default: <data root>/airflow)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DayRecord:
    domain: str
    day: str
    requests: int
    events: int
    intake: dict[str, int]
    releases: list[str]
    paths: dict[str, int]
    arms: dict[str, int]
    seconds: float


@dataclass
class LoopResult:
    settings: LoopSettings
    events: dict[str, pd.DataFrame] = field(default_factory=dict)  # per domain, with a ``day`` column
    slates: dict[str, pd.DataFrame] = field(default_factory=dict)  # per domain: one row per served slate
    days: list[DayRecord] = field(default_factory=list)
    nights: list[NightResult] = field(default_factory=list)
    truths: dict[str, GroundTruth] = field(default_factory=dict)  # the world's state after the last day
    seconds: float = 0.0
    retried: int = 0  # requests the service shed (503 + Retry-After) and the client sent again

    def summary(self) -> dict[str, Any]:
        return {"settings": self.settings.as_dict(), "seconds": round(self.seconds, 1), "retried": self.retried,
                "days": [asdict(d) for d in self.days], "nights": [n.as_dict() for n in self.nights]}


def first_loop_day(profile: str) -> date:
    """The day after the generated world's last day (its 'today', which lands through the stream)."""
    spec = get_profile(profile)
    return spec.start_date + timedelta(days=spec.days)


def epoch_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def sample_sessions(plan: SessionPlan, max_requests: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of the plan's requests to serve: all, or those of randomly chosen whole sessions whose
    requests stay within ``max_requests`` (kept in time order)."""
    everything = np.arange(len(plan.request_ids))
    if max_requests is None or len(everything) <= max_requests:
        return everything
    per_session = np.bincount(plan.request_session, minlength=len(plan.session_ids))
    order = rng.permutation(len(per_session))
    chosen = order[np.cumsum(per_session[order]) <= max_requests]
    return everything[np.isin(plan.request_session, chosen)]


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Contract-shaped JSON objects (ISO-8601 UTC times, missing fields left out) for ``POST /v1/events``;
    the fields only the service sets (the arm and propensity of the impressions it logs) are left out too."""
    if events.empty:
        return []
    frame = events.assign(timestamp=events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    frame = frame.drop(columns=["day", *SERVER_FIELDS], errors="ignore")
    out = []
    for row in frame.to_dict("records"):
        record = {}
        for key, value in row.items():
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                continue
            record[key] = int(value) if key in INT_FIELDS else value
        out.append(record)
    return out


def _attach_propensities(events: pd.DataFrame, slates: Sequence[Slate]) -> pd.DataFrame:
    keys = pd.DataFrame(
        [(s.request_id, pos, p) for s in slates for pos, p in enumerate(s.propensities, start=1)],
        columns=["request_id", "position", "propensity"],
    ).astype({"position": "Int32"})
    merged = events.merge(keys, on=["request_id", "position"], how="left")
    merged.loc[merged["event_type"] != "impression", "propensity"] = np.nan
    return merged


def serve_day(client: ServiceClient, truth: GroundTruth, day: date, slate_size: int, rng: np.random.Generator,
              max_requests: int | None = None, post: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """One domain's simulated day against the service: ``(slates, events, intake counts)``; ``post=False``
    keeps the events out of the service (a replica of a day, e.g. for the off-policy check)."""
    weekend, slates_per_session, organic = TRAFFIC[truth.domain]
    truth.advance_to(epoch_us(day))  # needs as of the day (banking life events)
    plan = plan_day(truth, epoch_us(day), weekend, slates_per_session, organic, rng)
    chosen = sample_sessions(plan, max_requests, rng)
    users = truth.user_ids[plan.request_user[chosen]]
    devices = np.array(DEVICES)[plan.request_device[chosen]]
    sessions = plan.session_ids[plan.request_session[chosen]]
    times = pd.to_datetime(plan.request_ts_us[chosen], unit="us", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    served = [client.recommend(str(u), truth.domain, slate_size, str(d), str(s), str(t))
              for u, d, s, t in zip(users, devices, sessions, times, strict=True)]
    context = SlateContext(np.array([s.request_id for s in served], dtype=str), sessions, devices,
                           plan.request_ts_us[chosen], np.array([s.arm for s in served], dtype=str))
    events = respond(truth, users, [s.item_ids for s in served], context, rng, include_impressions=True)
    events = _attach_propensities(events, served).assign(day=day.isoformat())
    posted = events[events["event_type"] != "impression"]  # the service logged the impressions itself
    account = account_events(truth, epoch_us(day), rng)  # banking: card spend, salary, transfers (not in `events`)
    intake = client.post_events(event_records(posted) + event_records(account)) if post else {}
    slates = pd.DataFrame({
        "request_id": context.request_ids, "user_id": users, "session_id": sessions, "device": devices,
        "timestamp": pd.to_datetime(plan.request_ts_us[chosen], unit="us", utc=True), "arm": context.arms,
        "release": [s.release for s in served], "path": [s.path for s in served],
        "items": [s.item_ids for s in served], "propensities": [s.propensities for s in served],
        "reasons": [s.reasons for s in served], "day": day.isoformat(),
    })
    return slates, events, intake


def run_loop(settings: LoopSettings, client: ServiceClient, progress: bool = True,
             on_day: Callable[[DayRecord], None] | None = None) -> LoopResult:
    """``settings.days`` simulated days against ``client``'s service, with the night between days."""
    started = time.perf_counter()
    paths = DataPaths.default()
    profile = get_profile(settings.profile)
    truths = {d: GroundTruth.load(paths, d) for d in settings.domains}
    rng = np.random.default_rng(settings.seed)
    result = LoopResult(settings, truths=truths)
    events: dict[str, list[pd.DataFrame]] = {d: [] for d in settings.domains}
    slates: dict[str, list[pd.DataFrame]] = {d: [] for d in settings.domains}
    first = first_loop_day(settings.profile)

    def out_of_time() -> bool:
        return settings.time_limit_s is not None and time.perf_counter() - started > settings.time_limit_s

    for offset in tqdm(range(settings.days), desc="simulated days", unit="day", disable=not progress):
        day = first + timedelta(days=offset)
        for name, truth in truths.items():
            began = time.perf_counter()
            day_slates, day_events, intake = serve_day(client, truth, day, profile.size(name).slate_size, rng,
                                                       settings.max_requests_per_day)
            slates[name].append(day_slates)
            events[name].append(day_events)
            record = DayRecord(name, day.isoformat(), len(day_slates), len(day_events), intake,
                               sorted(day_slates["release"].unique()), day_slates["path"].value_counts().to_dict(),
                               day_slates["arm"].value_counts().to_dict(), round(time.perf_counter() - began, 1))
            result.days.append(record)
            if on_day is not None:
                on_day(record)
        if offset == settings.days - 1:
            continue  # the last day: no night after it
        if out_of_time():
            break
        if settings.retrain != "none" and (offset + 1) % settings.retrain_every == 0:
            night = retrain(day, settings.retrain, settings.domains, settings.training_days,
                            airflow_home=Path(settings.airflow_home) if settings.airflow_home else None)
            result.nights.append(night)
            client.wait_for_releases({d: v for d, v in night.releases.items() if v is not None})
        else:  # no retraining tonight: the stream still lands the day and refreshes the online features
            drain_stream(paths)
    result.events = {d: pd.concat(parts, ignore_index=True) for d, parts in events.items() if parts}
    result.slates = {d: pd.concat(parts, ignore_index=True) for d, parts in slates.items() if parts}
    result.seconds = time.perf_counter() - started
    result.retried = client.retried
    return result


def prepare_world(profile: str, seed: int, domains: Sequence[str], mode: RetrainMode, training_days: int = 7,
                  airflow_home: Path | None = None, progress: bool = True) -> NightResult:
    """Generate the world of ``profile`` into the data root and build its first releases (the night of
    the world's last generated day). Nothing is live yet, so a fast night publishes them without the
    promotion gate (the loop needs a release to serve); later nights go through the gate."""
    from simulation.generate import generate

    spec = get_profile(profile)
    generate(profile, seed, DataPaths.default(), domains=tuple(domains), progress=progress)
    last = spec.start_date + timedelta(days=spec.days - 1)
    return retrain(last, "fast" if mode == "none" else mode, domains, training_days, airflow_home=airflow_home,
                   gate=False)

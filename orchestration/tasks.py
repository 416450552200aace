"""The Python tasks of the DAGs: each is what one task of ``dags/`` calls, keyed by the logical date.

Every function takes plain values (domain names, ``YYYY-MM-DD`` dates, versions) and returns a
JSON-serializable dict (the task's XCom), so the DAG files stay one call per task. Bad data and a
refused promotion raise ``AirflowFailException``: retrying cannot fix them, so the run fails at
once (and nothing downstream, in particular ``publish``, runs). A declared domain with no events in
the lake is skipped (its branch of the DAG, with a log line saying so); a night with no domain to
work on fails -- it never succeeds after doing nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

from common.domains import domain as domain_config
from common.domains import writable_domains
from common.errors import DataError
from common.lake import event_partitions
from common.paths import DataPaths
from orchestration.plan import plan_night
from orchestration.quality import check_domain
from orchestration.settings import load_settings

log = logging.getLogger(__name__)


def fail(message: str) -> NoReturn:
    """Fail the task at once, without retries (bad data, a refused release: a retry cannot fix them)."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


P = ParamSpec("P")
R = TypeVar("R")


def skip(message: str) -> NoReturn:
    """Skip the task and, through the default trigger rule, everything downstream of it."""
    from airflow.sdk.exceptions import AirflowSkipException

    log.warning("%s", message)
    raise AirflowSkipException(message)


def fails_fast(function: Callable[P, R]) -> Callable[P, R]:
    """A :class:`common.errors.DataError` in ``function`` fails its task without retries."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except DataError as err:
            fail(f"{function.__name__}: {err}")

    return wrapper


def domains_with_data(paths: DataPaths, names: list[str] | None = None) -> list[str]:
    """The writable domains (or ``names``) that have at least one raw event partition in the lake."""
    return [name for name in (names or writable_domains()) if list(event_partitions(paths, name))]


def logical_day_start(ds: str | None) -> datetime:
    """Midnight UTC at the start of the logical day ``ds`` (``YYYY-MM-DD``)."""
    if ds is None:
        fail("this DAG needs a logical date: trigger it with one (e.g. airflow dags test <dag> 2024-06-04)")
    day = date.fromisoformat(ds)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(ds: str | None) -> datetime:
    """Midnight UTC after the logical day: the feature rows of that day are true from then on."""
    return logical_day_start(ds) + timedelta(days=1)


def training_days_value(value: int | str | None) -> int | None:
    """``training_days`` as the plan takes it: a positive number of days, or None for "all" history."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    days = int(value)
    if days < 1:
        raise DataError(f"training_days must be a positive number of days or 'all', got {value!r}")
    return days


@fails_fast
def plan(ds: str, compact_lookback_days: int, training_days: int | str) -> dict[str, Any]:
    """The night's dates and the Spark jobs' arguments (:mod:`orchestration.plan`), for the writable
    domains with data; fails when none has any (the night would do nothing)."""
    paths = DataPaths.default()
    with_data = domains_with_data(paths)
    empty = sorted(set(writable_domains()) - set(with_data))
    if empty:
        log.warning("domains without any event in %s, skipped tonight: %s", paths.events, ", ".join(empty))
    if not with_data:
        raise DataError(f"no writable domain ({', '.join(writable_domains())}) has events in {paths.events}: "
                        "import or generate data first")
    try:
        night = plan_night(paths, logical_day_start(ds).date(), compact_lookback_days, training_days_value(training_days))
    except ValueError as err:
        raise DataError(str(err)) from err
    out = night.as_xcom(with_data)
    log.info("nightly plan for %s: %s", ds, out)
    return out


def check_quality(domain: str, ds: str) -> dict[str, Any]:
    """Run the data-quality checks of a domain's logical day; fail the run if any check fails, skip the
    domain's branch if it has no data at all."""
    paths = DataPaths.default()
    if not domains_with_data(paths, [domain]):
        skip(f"{domain}: no events in the lake ({paths.events / f'domain={domain}'}): skipped tonight")
    rules = load_settings().quality(domain)
    report = check_domain(paths, domain, date.fromisoformat(ds), rules, domain_config(domain).positive_events)
    log.info("%s", report.summary())
    if not report.ok:
        fail(report.summary())
    return report.as_dict()


def online_store() -> str:
    """The online store serving reads (``RECSYS_ONLINE_STORE``: sqlite or redis)."""
    from serving.settings import load_settings as serving_settings

    return serving_settings().online_store


def _feature_store() -> Any:
    """The Feast store serving reads, with the definitions registered (idempotent)."""
    from feature_repo.store import apply, get_store

    paths = DataPaths.default()
    store = get_store(paths, online_store())  # type: ignore[arg-type]
    apply(store, paths)
    return store


def materialize_day(ds: str) -> dict[str, str]:
    """Load the logical day's feature snapshot into the online store: the latest row per entity with
    an event time in ``[start of D, end of D]``. An explicit window, not "since the last run": the
    short-schedule DAG may already have moved the views' watermark past the end of ``D`` before the
    night wrote ``D``'s rows, and re-running the night writes the same values again."""
    from feature_repo.store import materialize

    start, end = logical_day_start(ds), day_end(ds)
    materialize(_feature_store(), start, end)
    log.info("materialized the snapshot of %s: %s .. %s", ds, start.isoformat(), end.isoformat())
    return {"start": start.isoformat(), "end": end.isoformat()}


def materialize_incremental(end: datetime) -> dict[str, list[str]]:
    """Materialize every view from where its last materialization ended up to ``end``."""
    from feature_repo.store import materialize_incremental as incremental

    if end is None:
        fail("this DAG needs a data interval: trigger it with a logical date")
    windows = incremental(_feature_store(), end)
    out = {name: [start.isoformat(), stop.isoformat()] for name, (start, stop) in windows.items()}
    log.info("materialized up to %s: %s", end.isoformat(), out or "every view was already up to date")
    return out

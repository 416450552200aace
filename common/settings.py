"""Every ``RECSYS_*`` environment variable of the platform, in one place, validated.

:func:`env` reads them (afresh on each call: tests and the CLI change the environment) into a
:class:`PlatformEnv`; a value that does not fit (``RECSYS_TRAINER_WORKERS=two``) raises a
``ValidationError`` naming the variable. ``recsys`` checks them all when it starts, so a typo fails
before any work. The settings files they point at are read by their own modules
(:mod:`common.domains`, :mod:`serving.settings`, :mod:`experiments.assignment`,
:mod:`orchestration.settings`). The README's table of variables is written from this class
(:func:`markdown_table`) and a test keeps the two and the code's uses in step.

Importing this module changes nothing in the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.paths import REPO_ROOT

PREFIX = "RECSYS_"


class PlatformEnv(BaseSettings):
    """The platform's environment variables (``RECSYS_`` + the field name in capitals); empty means unset."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # where things are
    data_dir: Path = Field(REPO_ROOT / "data", description="data root: lake, incoming events, Feast stores, "
                           "checkpoints")
    artifacts_dir: Path = Field(REPO_ROOT / "artifacts", description="artifact root: the releases of every domain")
    domains_file: Path = Field(REPO_ROOT / "config" / "domains.yaml", description="the domains and their rules")
    serving_file: Path = Field(REPO_ROOT / "config" / "serving.yaml", description="serving: budgets, admission, "
                               "re-ranking rules")
    experiments_file: Path = Field(REPO_ROOT / "config" / "experiments.yaml", description="A/B experiments and "
                                   "their arms")
    orchestration_file: Path = Field(REPO_ROOT / "orchestration" / "nightly.yaml", description="the nightly DAG's "
                                     "schedule, windows and gate")
    # the online store
    online_store: Literal["sqlite", "redis"] = Field("sqlite", description="the Feast online store serving and "
                                                     "the jobs use")
    redis_url: str | None = Field(None, description="host:port of Redis with `RECSYS_ONLINE_STORE=redis` "
                                  "(default 127.0.0.1:6379)")
    # keys
    api_key: str | None = Field(None, repr=False, description="the key of `POST /v1/events` (unset: intake "
                                "answers 503)")
    read_api_key: str | None = Field(None, repr=False, description="the key of `POST /v1/recommendations` "
                                     "(unset: reads are open)")
    # batch and training
    spark_master: str = Field("local[*]", description="Spark master of the batch jobs")
    spark_driver_memory: str = Field("4g", description="Spark driver memory (spark-submit's --driver-memory wins)")
    spark_shuffle_partitions: int | None = Field(None, ge=1, description="fixed shuffle partitions (default: one "
                                                 "per 64 MB of a job's input, 8-4000)")
    trainer_workers: int = Field(1, ge=1, description="ranker trainer processes "
                                 "(MultiWorkerMirroredStrategy when > 1)")
    materialize_writers: int = Field(1, ge=1, description="materialization's writer processes (several need "
                                     "the Redis online store; SQLite takes one)")
    # tools
    chromium: Path | None = Field(None, description="the Chromium the dashboard's browser test drives (default: "
                                  "`chromium` on PATH)")
    # set by the platform for its own child processes (documented, not to be set by hand)
    serving_domains: str | None = Field(None, description="internal: `recsys serving serve --domains`, for its "
                                        "workers")
    serving_log_level: str = Field("info", description="internal: serving's log level, for its workers")
    serving_shed_log: Path | None = Field(None, description="internal: the nginx front's shed log, for the "
                                          "workers' /metrics")
    metrics_workers_dir: Path | None = Field(None, description="internal: the directory where the serving "
                                             "workers sum their metrics")
    stream_crash_at: str | None = Field(None, description="internal (fault injection in tests): crash the "
                                        "streaming job at `<phase>:<batch id>`")


def env() -> PlatformEnv:
    """The platform's environment variables as they are now (parsed once per distinct set of values: this
    is called on hot paths, such as every validated event)."""
    return _parsed(tuple(os.environ.get(name) for name in _VARIABLES))


@lru_cache(maxsize=16)
def _parsed(values: tuple[str | None, ...]) -> PlatformEnv:
    """(``values``: the variables' values, the cache key) -- read from the same ``os.environ``."""
    return PlatformEnv()


_VARIABLES = tuple(PREFIX + name.upper() for name in PlatformEnv.model_fields)


def variable(field: str) -> str:
    """The environment variable of a :class:`PlatformEnv` field (``data_dir`` -> ``RECSYS_DATA_DIR``)."""
    if field not in PlatformEnv.model_fields:
        raise KeyError(field)
    return PREFIX + field.upper()


def markdown_table() -> str:
    """The README's table of variables."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in PlatformEnv.model_fields.items():
        default = field.default
        shown = "" if default is None else f"`{default.relative_to(REPO_ROOT)}`" if isinstance(default, Path) \
            else f"`{default}`"
        rows.append(f"| `{variable(name)}` | {shown} | {field.description} |")
    return "\n".join(rows)

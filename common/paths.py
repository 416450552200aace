"""The on-disk layout (local default). Everything lives under one data root and one artifact root.

``RECSYS_DATA_DIR`` / ``RECSYS_ARTIFACTS_DIR`` override the defaults (``./data`` and ``./artifacts``).

Layout under the data root::

    lake/events/domain=<d>/date=<YYYY-MM-DD>/part-*.parquet   raw event landing zone (simulator, import, stream)
    lake/compacted/domain=<d>/date=<YYYY-MM-DD>/              validated, deduplicated events (Spark compaction)
    lake/catalog/domain=<d>/catalog.parquet                   item catalog per domain
    lake/users/domain=<d>/users.parquet                       user profiles per domain
    incoming/<d>/*.jsonl                                      events waiting for the streaming job
    dead_letter/<source>/date=<YYYY-MM-DD>/*.jsonl            rejected records with their reason
    world/<d>/                                                the synthetic world's hidden truth
    features/<view>/...                                       Feast offline sources (Parquet, written by Spark)
    training/<domain>/<name>/                                 training sets built by Spark
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DataPaths:
    root: Path

    def __post_init__(self) -> None:
        if not isinstance(self.root, str | Path):
            raise TypeError(f"DataPaths takes a path, got {type(self.root).__name__}")
        object.__setattr__(self, "root", Path(self.root))  # a str root works too

    @classmethod
    def default(cls) -> DataPaths:
        from common.settings import env  # (common.settings takes REPO_ROOT from here)

        return cls(env().data_dir.resolve())

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def events(self) -> Path:
        return self.lake / "events"

    def events_partition(self, domain: str, date: str) -> Path:
        return self.events / f"domain={domain}" / f"date={date}"

    @property
    def compacted_events(self) -> Path:
        return self.lake / "compacted"

    def catalog(self, domain: str) -> Path:
        return self.lake / "catalog" / f"domain={domain}" / "catalog.parquet"

    def users(self, domain: str) -> Path:
        return self.lake / "users" / f"domain={domain}" / "users.parquet"

    def incoming(self, domain: str | None = None) -> Path:
        return self.root / "incoming" if domain is None else self.root / "incoming" / domain

    def dead_letter(self, source: str) -> Path:
        return self.root / "dead_letter" / source

    def world(self, domain: str) -> Path:
        return self.root / "world" / domain

    @property
    def features(self) -> Path:
        return self.root / "features"

    def feature_source(self, view: str) -> Path:
        return self.features / view

    def experiments(self, domain: str) -> Path:
        return self.root / "experiments" / domain

    def training(self, domain: str, name: str) -> Path:
        return self.root / "training" / domain / name


def artifacts_root() -> Path:
    from common.settings import env

    return env().artifacts_dir.resolve()

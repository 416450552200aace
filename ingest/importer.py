"""Import a user's own data: events, catalog and users files (CSV or Parquet, any subset of the three).

Every row is validated against the platform contracts (``common.schemas``); nothing is silently
dropped: each rejected row goes to the dead-letter store (``dead_letter/import/``, one file per
import and kind, holding the raw row as read and the reason) and is counted by reason code.

* events: accepted rows are appended to the event lake under a basename unique to this import; an
  ``event_id`` seen earlier in the same import is rejected as ``duplicate_event_id`` (first kept).
* catalog / users: accepted rows are merged into each domain's table by id -- an imported row
  replaces the stored row with the same id. A repeated id within the import is rejected
  (``invalid_value``, first kept).
* rows of a read-only domain (the MovieLens benchmark) are rejected as ``invalid_value``: that
  domain is written by its loader only.

CSV cells are typed as described in :mod:`ingest.readers`.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from common.deadletter import DeadLetterWriter
from common.domains import domains
from common.lake import write_catalog, write_events, write_users
from common.lake_schemas import CATALOG_ARROW_SCHEMA, EVENT_ARROW_SCHEMA, USER_ARROW_SCHEMA, to_arrow
from common.paths import DataPaths
from common.schemas import Reason, Rejection, validate_catalog_item, validate_event, validate_user
from ingest.readers import EXTRA_CELLS, read_rows

Validator = Callable[[Any], tuple[BaseModel | None, Rejection | None]]


@dataclass(frozen=True)
class _Kind:
    name: str
    id_field: str
    schema: pa.Schema
    validate: Validator
    duplicate_code: str


KINDS = {
    "catalog": _Kind("catalog", "item_id", CATALOG_ARROW_SCHEMA, validate_catalog_item, Reason.INVALID_VALUE),
    "users": _Kind("users", "user_id", USER_ARROW_SCHEMA, validate_user, Reason.INVALID_VALUE),
    "events": _Kind("events", "event_id", EVENT_ARROW_SCHEMA, validate_event, Reason.DUPLICATE_EVENT_ID),
}


@dataclass
class KindReport:
    """What happened to one imported file."""

    kind: str
    source: Path
    read: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    accepted_by_domain: Counter[str] = field(default_factory=Counter)
    dead_letter_file: Path | None = None
    lake_paths: list[Path] = field(default_factory=list)


@dataclass
class ImportReport:
    import_id: str
    data_root: Path
    kinds: dict[str, KindReport] = field(default_factory=dict)

    @property
    def read(self) -> int:
        return sum(k.read for k in self.kinds.values())

    @property
    def accepted(self) -> int:
        return sum(k.accepted for k in self.kinds.values())

    @property
    def rejected(self) -> int:
        return sum(sum(k.rejected.values()) for k in self.kinds.values())

    def render(self) -> str:
        lines = [f"import {self.import_id} into {self.data_root}"]
        for rep in self.kinds.values():
            lines.append(
                f"{rep.kind:8s} {rep.source}: read {rep.read:,}, accepted {rep.accepted:,}, "
                f"rejected {sum(rep.rejected.values()):,}"
            )
            lines += [f"    rejected {code}: {n:,}" for code, n in sorted(rep.rejected.items())]
            if rep.accepted_by_domain:
                per_domain = ", ".join(f"{d}={n:,}" for d, n in sorted(rep.accepted_by_domain.items()))
                lines.append(f"    accepted by domain: {per_domain}")
            lines += [f"    written to {p}" for p in rep.lake_paths]
            if rep.dead_letter_file:
                lines.append(f"    rejects (raw rows + reasons) in {rep.dead_letter_file}")
        lines.append(f"total: read {self.read:,}, accepted {self.accepted:,}, rejected {self.rejected:,}")
        return "\n".join(lines)


def _guarded(validate: Validator, row: dict[str, Any]) -> tuple[BaseModel | None, Rejection | None]:
    """The contract validator, with exceptions it lets escape on odd input turned into rejections."""
    try:
        return validate(row)
    except (TypeError, ValueError, OverflowError, OSError) as err:
        return None, Rejection(Reason.INVALID_VALUE, None, f"{type(err).__name__}: {err}")


def _check(kind: _Kind, raw: dict[str, Any], typed: dict[str, Any], seen: set[str]) -> tuple[BaseModel | None, Rejection | None]:
    if EXTRA_CELLS in raw:
        return None, Rejection(Reason.INVALID_VALUE, None, f"row has {len(raw[EXTRA_CELLS])} cell(s) more than the header")
    record, rejection = _guarded(kind.validate, typed)
    if record is None:
        return None, rejection
    if domains()[record.domain].read_only:
        return None, Rejection(Reason.INVALID_VALUE, "domain", f"domain {record.domain!r} is read-only")
    key = getattr(record, kind.id_field)
    if key in seen:
        return None, Rejection(kind.duplicate_code, kind.id_field, f"{kind.id_field} {key!r} repeats an earlier row of this import")
    seen.add(key)
    return record, None


def _merge_by_id(existing_path: Path, new: pa.Table, id_field: str, schema: pa.Schema) -> pa.Table:
    """Stored rows whose id is not imported again, followed by the imported rows."""
    if not existing_path.exists():
        return new
    existing = pq.read_table(existing_path).select(schema.names).cast(schema)
    kept = existing.filter(pc.invert(pc.is_in(existing[id_field], value_set=new[id_field])))
    return pa.concat_tables([kept, new])


def _write(kind: _Kind, records: list[BaseModel], paths: DataPaths, import_id: str, rep: KindReport) -> None:
    if kind.name == "events":
        table = to_arrow(records, kind.schema)
        write_events(table, paths, basename=f"import-{import_id}-{{i}}", replace_partitions=False)
        rep.lake_paths = [paths.events / f"domain={d}" for d in sorted(rep.accepted_by_domain)]
        return
    by_domain: dict[str, list[BaseModel]] = defaultdict(list)
    for record in records:
        by_domain[record.domain].append(record)
    for dom, rows in sorted(by_domain.items()):
        if kind.name == "catalog":
            target, write = paths.catalog(dom), write_catalog
        else:
            target, write = paths.users(dom), write_users
        write(_merge_by_id(target, to_arrow(rows, kind.schema), kind.id_field, kind.schema), paths, dom)
        rep.lake_paths.append(target)


def _import_one(kind: _Kind, source: Path, paths: DataPaths, import_id: str, say: Callable[[str], None]) -> KindReport:
    rep = KindReport(kind=kind.name, source=source)
    dead = DeadLetterWriter(paths, source="import", name=f"{import_id}-{kind.name}")
    accepted: list[BaseModel] = []
    rejected: list[tuple[dict[str, Any], Rejection]] = []
    seen: set[str] = set()
    for row in read_rows(source, kind.schema):
        rep.read += 1
        record, rejection = _check(kind, row.raw, row.typed, seen)
        if record is None:
            rejected.append((row.raw, rejection))
        else:
            accepted.append(record)
            rep.accepted_by_domain[record.domain] += 1
        if rep.read % 100_000 == 0:
            say(f"  {kind.name}: {rep.read:,} rows checked")
    rep.accepted = len(accepted)
    if rejected:
        dead.write_many(rejected)
        rep.rejected = Counter(dead.counts)
        rep.dead_letter_file = next(paths.dead_letter("import").glob(f"date=*/{dead.name}.jsonl"))
    if accepted:
        _write(kind, accepted, paths, import_id, rep)
    return rep


def new_import_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def import_files(
    paths: DataPaths,
    *,
    events: Path | None = None,
    catalog: Path | None = None,
    users: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Validate and load the given files into the lake; see the module docstring for the rules."""
    sources = {"catalog": catalog, "users": users, "events": events}
    if all(p is None for p in sources.values()):
        raise ValueError("nothing to import: give at least one of events, catalog, users")
    for path in sources.values():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"import file not found: {path}")
    say = progress or (lambda _msg: None)
    report = ImportReport(import_id=new_import_id(), data_root=paths.root)
    for name, path in sources.items():
        if path is not None:
            say(f"importing {name} from {path}")
            report.kinds[name] = _import_one(KINDS[name], Path(path), paths, report.import_id, say)
    return report

